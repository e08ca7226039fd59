import type { Page } from 'playwright-core';
import { closedWorkflow, publishedBy, type ApiEnv } from '../support/api';
import { openConsoleSession, type ConsoleSession } from '../support/console-page';
import { journalPayloads } from '../support/payloads';
import { signToken } from '../support/tokens';

// Issue 13, points 3-5 in Chromium: the range-replay form takes a payload filter, a transform and the ordering; its
// dry run shows the count and the first matches as the transform would send them; the API's 400s show beside the
// form; and the replay it starts sends only the matching events, patched, with the transform in their lineage.

const SECRET = 'console-range-replay-secret-0123456789';
const exp = Math.floor(Date.now() / 1000) + 3600;
const OPERATOR = signToken({ sub: 'console-operator', role: 'operator', exp }, SECRET);
const TENANT = 'console-range';
const FILTER = '$.source == "trade-show"';
const PATCH = [
  { op: 'move', from: '/name', path: '/full_name' },
  { op: 'add', path: '/consumer', value: 'console' },
];

let session: ConsoleSession;
let env: ApiEnv;
let page: Page;
let ids: number[];

beforeAll(async () => {
  session = await openConsoleSession('console-range-replay', { ingest: false, env: { AUTH_JWT_SECRET: SECRET } });
  ({ env, page } = session);
  ids = await journalPayloads(env.h.pool, TENANT, env.h.topics.leads, [
    { tenant_id: TENANT, lead_id: 1, name: 'Ada', source: 'trade-show' },
    { tenant_id: TENANT, lead_id: 2, name: 'Grace', source: 'web' },
    { tenant_id: TENANT, lead_id: 3, source: 'trade-show' }, // no name: the transform's move fails on it
    { tenant_id: TENANT, lead_id: 4, name: 'Edsger', source: 'trade-show' },
  ]);
  await page.goto(`${session.base}/console`);
  await page.fill('#token', OPERATOR);
  await page.click('#token-save');
  // The rows were received an hour ago: open the window two hours back (local time, as the input takes it).
  const start = new Date(Date.now() - 2 * 3600_000);
  await page.fill(
    '#range-start',
    new Date(start.getTime() - start.getTimezoneOffset() * 60_000).toISOString().slice(0, 19),
  );
  await page.fill('#range-tenant', TENANT);
}, 120_000);
afterAll(() => session?.close());

const refusal = async () => (await page.locator('#range-result .refusal').textContent())!;

it("shows a payload filter's or a transform's 400 beside the form", async () => {
  await page.fill('#range-payload-filter', '$.source ==');
  await page.click('#range-preview');
  await page.locator('#range-result .refusal').waitFor();
  expect(await refusal()).toMatch(
    /^POST \/replay\/range answered 400: body\/payload_filter is not a valid JSONPath predicate: syntax error/,
  );

  await page.fill('#range-payload-filter', FILTER);
  await page.fill('#range-transform', '[{"op": "remove", "path": "/_replay_id"}]');
  await page.click('#range-preview');
  await page.locator('#range-result .refusal', { hasText: 'lineage field' }).waitFor();
  expect(await refusal()).toMatch(
    /answered 400: body\/transform cannot be applied: .* names the lineage field _replay_id/,
  );

  await page.fill('#range-transform', '[{"op": "add"');
  await page.click('#range-preview');
  await page.locator('#range-result .refusal', { hasText: 'not JSON' }).waitFor();
  expect(await refusal()).toMatch(/^The transform is not JSON/);
});

it('previews the filtered range: the count, and each first match before and as the transform sends it', async () => {
  await page.fill('#range-payload-filter', FILTER);
  await page.fill('#range-transform', JSON.stringify(PATCH));
  await page.selectOption('#range-ordering', 'per_key');
  await page.click('#range-preview');
  await page.locator('#range-result .matched').waitFor();
  expect(await page.textContent('#range-result .matched')).toBe('3');
  expect(await page.textContent('#range-result .by-tenant')).toBe(`${TENANT}: 3`);
  expect(await page.textContent('#range-result .transform-id')).toMatch(/^jp-[0-9a-f]{16}$/);

  const rows = page.locator('#range-result .range-sample tbody tr');
  expect(await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute('data-id'))))).toEqual([
    ids[0],
    ids[2],
    ids[3],
  ]);
  const cell = async (id: number, name: string) =>
    (await page.locator(`#range-result tr[data-id="${id}"] td.${name}`).textContent())!;
  expect(JSON.parse(await cell(ids[0], 'payload'))).toEqual({
    tenant_id: TENANT,
    lead_id: 1,
    name: 'Ada',
    source: 'trade-show',
  });
  expect(JSON.parse(await cell(ids[0], 'transformed'))).toEqual({
    tenant_id: TENANT,
    lead_id: 1,
    full_name: 'Ada',
    consumer: 'console',
    source: 'trade-show',
  });
  expect(await cell(ids[2], 'transformed')).toMatch(/operation 0 \(move \/full_name\) failed/);
});

it('replays what the preview showed: the matching events, patched, with the ordering, recorded in the audit', async () => {
  page.once('dialog', (dialog) => {
    expect(dialog.message()).toContain(`payloads matching ${FILTER}`);
    expect(dialog.message()).toContain('ordering per_key');
    void dialog.accept();
  });
  await page.click('#range-replay');
  const link = page.locator('#range-result a');
  await link.waitFor();
  const workflowId = (await link.textContent())!;

  const closed = await closedWorkflow(env.app, workflowId, { authorization: `Bearer ${OPERATOR}` });
  expect(closed).toMatchObject({ workflow_status: 'COMPLETED', result: { matched: 3, published: 2, failed: 1 } });
  const sent = await publishedBy(env.h, env.h.topics.leads, workflowId);
  const byId = [...sent].sort((a, b) => Number(a._replayed_from_event_id) - Number(b._replayed_from_event_id));
  expect(byId.map((m) => [m._replayed_from_event_id, m.full_name, m.consumer])).toEqual([
    [ids[0], 'Ada', 'console'],
    [ids[3], 'Edsger', 'console'],
  ]);
  const { rows } = await env.h.pool.query('SELECT filter, requested_by FROM replay_audit WHERE workflow_id = $1', [
    workflowId,
  ]);
  expect(rows).toEqual([
    {
      requested_by: 'console-operator',
      filter: expect.objectContaining({
        payloadFilter: FILTER,
        ordering: 'per_key',
        transform: { id: sent[0]._replay_transform, patch: PATCH },
      }),
    },
  ]);
  // Chromium logs each 400 the first test provoked (two API refusals; the third was the page's own): nothing else.
  const refused = /status of 400 \(Bad Request\) \(http:\/\/127\.0\.0\.1:\d+\/replay\/range\)$/;
  expect(session.pageErrors.filter((e) => !refused.test(e))).toEqual([]);
  expect(session.pageErrors).toHaveLength(2);
});
