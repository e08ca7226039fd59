import { createApiEnv, json, produceJournaled, type ApiEnv } from '../support/api';
import { findValue } from '../support/erasure';
import { eventually } from '../support/sink';
import { uniqueSuffix } from '../support/env';

/**
 * Invariant 5: after an erasure of a data subject completes, no store holds the value. Two operator actions copy a
 * subject's value into Postgres outside the journal and the DLQ, and the erasure leaves both copies: a range replay
 * asked with a payload filter on the subject's email (replay_audit.filter keeps the filter), and a dead letter
 * repaired with a replacement value (dlq_repairs.edit keeps the value; the repaired event itself is erased).
 */
let env: ApiEnv;
beforeAll(async () => {
  env = await createApiEnv('attack6-erasure-copies', { env: { API_REPLAY_RATE_LIMIT_PER_MINUTE: '10000' } });
}, 120_000);
afterAll(() => env?.close());

const post = (url: string, body: unknown) =>
  env.app.inject({ method: 'POST', url, headers: { 'x-requested-by': 'test' }, payload: body as object });

it('an erased subject leaves no copy in the replay audit filters nor in the DLQ repairs', async () => {
  const { h } = env;
  const value = `attack6-${uniqueSuffix()}@example.com`;
  const start = new Date(Date.now() - 60_000).toISOString();
  await produceJournaled(h, h.topics.leads, [{ tenant_id: 'acme', email: value, name: 'Ann' }]);

  // An operator looks for the subject's events with a range replay's dry run filtered on the email.
  const dryRun = await post('/replay/range', {
    start,
    end: new Date(Date.now() + 60_000).toISOString(),
    payload_filter: `$.email == "${value}"`,
    dry_run: true,
  });
  expect(dryRun.statusCode).toBe(200);
  expect(json(dryRun)).toMatchObject({ matched: 1 });

  // A dead letter of the subject (no tenant) is repaired with a replacement value that holds the email.
  await h.send(h.topics.leads, [JSON.stringify({ email: value, name: 'Ann' })]);
  await eventually(async () => (await h.dlqCount()) === 1, 'the dead letter');
  const { rows } = await h.pool.query<{ id: number }>('SELECT id FROM event_dlq');
  const repaired = await post('/dlq/repair', {
    ids: [rows[0].id],
    value: { tenant_id: 'acme', email: value, name: 'Ann' },
    reason: 'tenant added by hand',
  });
  expect(repaired.statusCode).toBe(200);
  expect(json(repaired)).toMatchObject({ status: 'completed', journaled: 1 });

  const started = await post('/erasure', { subject: { field: 'email', value }, dry_run: false });
  expect(started.statusCode).toBe(202);
  const { status_url: statusUrl } = json<{ status_url: string }>(started);
  await eventually(async () => {
    const res = json<{ status: string }>(await env.app.inject({ method: 'GET', url: statusUrl }));
    return res.status === 'completed';
  }, 'the erasure completed');

  expect(await findValue(h.pool, h.archive, value)).toEqual([]);
});
