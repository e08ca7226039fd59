import type { Browser, Page } from 'playwright-core';
import { consolePage, launchChromium } from '../support/chromium';
import { signToken } from '../support/tokens';
import { createApiEnv, type ApiEnv } from '../support/api';
import { eventually } from '../support/sink';

// The console's journal lifecycle panel in Chromium (docs/lifecycle.md): an admin sees retention per topic, edits
// and saves it, runs maintenance and sees the run, the partitions and the archive; an operator sees why the panel is
// empty and the page raises no error.

const SECRET = 'console-lifecycle-secret-0123456789';
const exp = Math.floor(Date.now() / 1000) + 3600;
const ADMIN = signToken({ sub: 'console-admin', role: 'admin', exp }, SECRET);
const OPERATOR = signToken({ sub: 'console-operator', role: 'operator', exp }, SECRET);

let env: ApiEnv;
let base: string;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  env = await createApiEnv('console-lifecycle', { ingest: false, env: { AUTH_JWT_SECRET: SECRET } });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(env.app.server.address() as { port: number }).port}`;
  browser = await launchChromium();
  page = await consolePage(browser, pageErrors);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await env?.close();
});

async function useToken(token: string) {
  await page.goto(`${base}/console`);
  await page.fill('#token', token);
  await page.click('#token-save');
}

it('an admin edits retention, runs maintenance, and sees the run, the partitions and the archive', async () => {
  await useToken(ADMIN);
  const leads = env.h.topics.leads;
  const row = page.locator(`#retention-rows tr[data-topic="${leads}"]`);
  await row.waitFor();
  await row.locator('input.days').fill('400');
  await page.click('#retention-save');
  await eventually(async () => {
    const { rows } = await env.h.pool.query('SELECT keep_days, updated_by FROM retention_policies WHERE topic = $1', [
      leads,
    ]);
    return rows[0]?.keep_days === 400 && rows[0].updated_by === 'console-admin';
  }, 'retention saved by the console');
  await page.click('#maintenance-dry-run');
  await page.locator('#maintenance-rows tr[data-status="completed"]').first().waitFor({ timeout: 30_000 });
  expect(await page.locator('#partition-rows tr').count()).toBeGreaterThanOrEqual(5);
  expect(await page.textContent('#archive-summary')).toContain('segments (local store)');
  expect(pageErrors).toEqual([]);
});

it('an admin counts, then erases, a data subject from the console; the list shows the erasure, not the value', async () => {
  await useToken(ADMIN);
  const email = `erase-me-${Date.now()}@example.com`;
  await env.h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('acme', $1, jsonb_build_object('email', $2::text, 'n', 1)),
            ('acme', $1, jsonb_build_object('email', 'keep@example.com', 'n', 2))`,
    [env.h.topics.leads, email],
  );
  await page.selectOption('#erasure-kind', 'subject');
  await page.fill('#erasure-field', 'email');
  await page.fill('#erasure-value', email);
  await page.click('#erasure-preview');
  await page.locator('#erasure-result:not([hidden])').waitFor();
  expect(await page.textContent('#erasure-result')).toContain('Would erase 1 journal rows');
  await page.click('#erasure-run');
  await eventually(async () => {
    const { rows } = await env.h.pool.query(
      "SELECT count(*)::int AS n FROM event_journal WHERE payload->>'email' = $1",
      [email],
    );
    return rows[0].n === 0;
  }, 'the subject erased');
  await page.click('#lifecycle-refresh');
  await page.locator('#erasure-rows tr[data-status="completed"]').first().waitFor({ timeout: 30_000 });
  expect(await page.textContent('#erasure-rows')).toContain('subject email');
  expect(await page.textContent('#erasure-rows')).not.toContain(email);
  const { rows } = await env.h.pool.query(
    "SELECT count(*)::int AS n FROM event_journal WHERE payload->>'email' = 'keep@example.com'",
  );
  expect(rows[0].n).toBe(1);
  expect(pageErrors).toEqual([]);
});

it('an operator sees why the panel is empty, and the page raises no error', async () => {
  await useToken(OPERATOR);
  await page.locator('#lifecycle-note:not([hidden])').waitFor();
  expect(await page.textContent('#lifecycle-note')).toContain('admin token');
  expect(await page.locator('#retention-rows tr').count()).toBe(0);
  expect(pageErrors).toEqual([]);
});
