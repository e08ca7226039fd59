import type { Page } from 'playwright-core';
import type { ApiEnv } from '../support/api';
import { openConsoleSession, type ConsoleSession } from '../support/console-page';
import { signToken } from '../support/tokens';
import { eventually } from '../support/sink';

// Issue 13, point 2 in Chromium: an operator opens the edit-and-retry dialog on a dead letter, sees its value,
// previews a patch that would not journal and one that would, applies it, and the entry is journaled with lineage.

const SECRET = 'console-dlq-repair-secret-0123456789';
const exp = Math.floor(Date.now() / 1000) + 3600;
const OPERATOR = signToken({ sub: 'console-operator', role: 'operator', exp }, SECRET);

let session: ConsoleSession;
let env: ApiEnv;
let page: Page;

beforeAll(async () => {
  session = await openConsoleSession('console-dlq-repair', { env: { AUTH_JWT_SECRET: SECRET } });
  ({ env, page } = session);
}, 120_000);
afterAll(() => session?.close());

it('previews and applies a patch to a dead letter from its edit dialog', async () => {
  await env.h.send(env.h.topics.leads, ['{"lead_id":41,"name":"no tenant"}']);
  await eventually(async () => (await env.h.dlqCount()) === 1, 'the dead letter');
  const { rows } = await env.h.pool.query<{ id: number }>('SELECT id FROM event_dlq');
  const id = rows[0].id;

  await page.goto(`${session.base}/console`);
  await page.fill('#token', OPERATOR);
  await page.click('#token-save');
  await page.locator(`#dlq-rows tr[data-id="${id}"] button:has-text("Edit")`).click();
  await page.locator('#repair-dialog[open]').waitFor();
  await page.locator('#repair-before:has-text("no tenant")').waitFor();
  expect(JSON.parse((await page.textContent('#repair-before'))!)).toEqual({ lead_id: 41, name: 'no tenant' });

  // The template adds an empty tenant: the consumer's parser refuses it, and Apply stays disabled.
  await page.click('#repair-preview');
  await page.locator('#repair-result[data-would-journal="false"]').waitFor();
  expect(await page.textContent('#repair-result')).toContain('Would not journal: Event has no tenant');
  expect(await page.isDisabled('#repair-apply')).toBe(true);

  await page.fill('#repair-edit', '[{"op": "add", "path": "/tenant_id", "value": "acme"}]');
  await page.click('#repair-preview');
  await page.locator('#repair-result[data-would-journal="true"]').waitFor();
  expect(await page.textContent('#repair-result')).toContain('"path": "/tenant_id"');
  expect(await page.textContent('#repair-result')).toContain('"tenant_id": "acme"');
  await page.click('#repair-apply');
  await page.locator('#repair-dialog').waitFor({ state: 'hidden' });

  await eventually(async () => {
    const dlq = await env.h.pool.query('SELECT status, resolved_event_id FROM event_dlq WHERE id = $1', [id]);
    return dlq.rows[0].status === 'resolved';
  }, 'the entry resolved by the repair');
  const journaled = await env.h.pool.query(
    "SELECT tenant_id, payload FROM event_journal WHERE payload->>'_repaired_from_dlq_id' = $1",
    [String(id)],
  );
  expect(journaled.rows).toEqual([
    {
      tenant_id: 'acme',
      payload: expect.objectContaining({ lead_id: 41, tenant_id: 'acme', _repair_id: expect.any(String) }),
    },
  ]);
  const audit = await env.h.pool.query('SELECT requested_by FROM dlq_repairs');
  expect(audit.rows).toEqual([{ requested_by: 'console-operator' }]);
  expect(session.pageErrors).toEqual([]);
});
