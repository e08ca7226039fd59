import { createApiEnv, json, type ApiEnv } from '../support/api';

/**
 * POST /erasure accepts a subject value as a JSON number. A lead id beyond 2^53 given as a number has already lost
 * digits when the body is parsed, so the erasure silently targets another value: the subject's rows stay (and a
 * neighbour whose id equals the rounded number would be erased instead). The API must refuse such a number (4xx
 * naming the problem) rather than erase the wrong subject.
 */
let env: ApiEnv;
beforeAll(async () => {
  env = await createApiEnv('attack4-erasure-int', { worker: false, ingest: false });
});
afterAll(() => env?.close());

it('a lead id beyond 2^53 sent as a JSON number is refused, not rounded into another subject', async () => {
  const { h } = env;
  // The subject (20 digits, kept exactly by jsonb), two rows of it, and one row of a neighbour whose lead id is what
  // JSON.parse rounds the subject's to.
  const subject = '12345678901234567891';
  const rounded = String(Number(subject));
  expect(rounded).not.toBe(subject);
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload) VALUES
       ('acme', $1, jsonb_build_object('lead_id', $2::numeric)),
       ('acme', $1, jsonb_build_object('lead_id', $2::numeric, 'n', 2)),
       ('globex', $1, jsonb_build_object('lead_id', $3::numeric))`,
    [h.topics.leads, subject, rounded],
  );
  const res = await env.app.inject({
    method: 'POST',
    url: '/erasure',
    headers: { 'x-requested-by': 'test', 'content-type': 'application/json' },
    // The raw body, digits intact, as a client that writes numbers as numbers sends it.
    payload: `{"subject": {"field": "lead_id", "value": ${subject}}, "dry_run": true}`,
  });
  // Either refused (4xx naming the value), or it counts the subject's own two rows: never the neighbour's.
  if (res.statusCode >= 400 && res.statusCode < 500) {
    expect(json(res).message).toMatch(/value/);
    return;
  }
  expect(res.statusCode).toBe(200);
  expect(json<{ counts: { journal: { rows: number } } }>(res).counts.journal.rows).toBe(2);
});
