import type { Browser, Page } from 'playwright-core';
import { consolePage, launchChromium } from '../support/chromium';
import { createApiEnv, type ApiEnv } from '../support/api';
import { seedDeadLetters } from '../support/dlq';
import { eventually } from '../support/sink';
import { signToken } from '../support/tokens';

// The console's DLQ groups panel in Chromium (issue 13, point 1): an operator sees dead letters grouped by error
// class, topic and day, previews a bulk action (a dry run: counts, nothing changed), confirms it, and the bulk
// workflow acts on exactly that group; discard asks for a reason.

const SECRET = 'console-dlq-groups-secret-0123456789';
const exp = Math.floor(Date.now() / 1000) + 3600;
const OPERATOR = signToken({ sub: 'console-operator', role: 'operator', exp }, SECRET);

let env: ApiEnv;
let base: string;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
let seeded: Awaited<ReturnType<typeof seedDeadLetters>>;

beforeAll(async () => {
  env = await createApiEnv('console-dlq-groups', { ingest: false, env: { AUTH_JWT_SECRET: SECRET } });
  seeded = await seedDeadLetters(env.h.pool, env.h.topics.leads, { fixable: 3, badJson: 2 });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(env.app.server.address() as { port: number }).port}`;
  browser = await launchChromium();
  page = await consolePage(browser, pageErrors);
  await page.goto(`${base}/console`);
  await page.fill('#token', OPERATOR);
  await page.click('#token-save');
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await env?.close();
});

const statuses = async (ids: number[]) =>
  (await env.h.pool.query('SELECT status FROM event_dlq WHERE id = ANY($1) ORDER BY id', [ids])).rows.map(
    (r) => r.status as string,
  );
const group = (errorClass: string) => page.locator(`#dlq-group-rows tr[data-error-class="${errorClass}"]`);

it('retries a group: the preview counts without changing anything, the confirmation runs the workflow', async () => {
  const row = group('db_error:check_violation:bar_block');
  await row.waitFor();
  expect(await row.textContent()).toContain('3 (3 open, 0 parked)');
  await row.locator('button.bulk-retry').click();
  await page.locator('#dlq-bulk-confirm:not([hidden])').waitFor();
  expect(await page.textContent('#dlq-bulk-summary')).toContain('retry: 3 of 3 dead letters');
  expect(await page.isHidden('#dlq-bulk-reason')).toBe(true);
  expect(await statuses(seeded.fixable)).toEqual(['pending', 'pending', 'pending']);

  await page.click('#dlq-bulk-run');
  await eventually(
    async () => (await statuses(seeded.fixable)).every((s) => s === 'resolved'),
    'the group retried and resolved',
  );
  expect(await statuses(seeded.badJson)).toEqual(['pending', 'pending']);
  await eventually(async () => {
    await page.click('#dlq-groups-refresh');
    return (await group('db_error:check_violation:bar_block').textContent())?.includes('(0 open') ?? false;
  }, 'the panel shows the group settled');
  expect(pageErrors).toEqual([]);
});

it('discards a group only with a reason, which the entries keep', async () => {
  const row = group('invalid_json');
  await row.locator('button.bulk-discard').click();
  await page.locator('#dlq-bulk-reason:not([hidden])').waitFor();
  expect(await page.textContent('#dlq-bulk-summary')).toContain('discard: 2 of 2 dead letters');
  // Without a reason the API refuses, and the console says why.
  await page.click('#dlq-bulk-run');
  await page.locator('#notice.error').waitFor();
  expect(await page.textContent('#notice')).toContain('reason is required');
  expect(await statuses(seeded.badJson)).toEqual(['pending', 'pending']);

  await page.fill('#dlq-bulk-reason', 'malformed test traffic');
  await page.click('#dlq-bulk-run');
  await eventually(async () => {
    const { rows } = await env.h.pool.query('SELECT status, discard_reason FROM event_dlq WHERE id = ANY($1)', [
      seeded.badJson,
    ]);
    return rows.every((r) => r.status === 'discarded' && r.discard_reason === 'malformed test traffic');
  }, 'the group discarded with its reason');
  // Only the API's refusal above was an error on the page.
  expect(pageErrors.filter((e) => !/status of 400/.test(e))).toEqual([]);
});
