import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/chromium';
import { signToken } from '../support/tokens';
import { buildTestApp, createApiEnv, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { eventually } from '../support/sink';

/**
 * The operator console in a real headless Chromium (Debian's package, driven by playwright-core), against the whole
 * service on the real stack with auth on: ingest, the live stream, a replay worker, and the API listening on a port.
 * The tests run in order and share one page, as an operator would: token once, then stream, replay, DLQ, range.
 */
const SECRET = 'console-test-secret-0123456789';
const TOKEN = signToken(
  { sub: 'console-operator', role: 'operator', exp: Math.floor(Date.now() / 1000) + 3600 },
  SECRET,
);
const marker = `console-${uniqueSuffix()}`;

let env: ApiEnv;
let base: string;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  env = await createApiEnv('console', { env: { AUTH_JWT_SECRET: SECRET } });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(env.app.server.address() as { port: number }).port}`;
  browser = await launchChromium();
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 1000 } });
  page = await context.newPage();
  page.setDefaultTimeout(20_000);
  // Script errors and CSP violations (which Chromium reports on the console) fail the last test.
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of 401/.test(msg.text()))
      pageErrors.push(`${msg.text()} (${msg.location().url})`);
  });
});

afterAll(async () => {
  await browser?.close();
  await env?.close();
});

const live = (text: string) => page.locator('#events li', { hasText: text });
const shownLive = () => page.locator('#events li:not([hidden])');
const produce = (name: string, tenant = 'acme') => env.h.send(env.h.topics.leads, [{ tenant_id: tenant, name }]);
const journalId = async (name: string) =>
  eventually(async () => {
    const { rows } = await env.h.pool.query<{ id: string }>(
      "SELECT id FROM event_journal WHERE payload->>'name' = $1 AND replay_count = 0",
      [name],
    );
    return rows[0] && Number(rows[0].id);
  }, `${name} journaled`);

it('serves the page without a token while its API calls still need one', async () => {
  const res = await fetch(`${base}/console`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/html/);
  expect(res.headers.get('content-security-policy')).toMatch(/script-src 'sha256-/);
  const html = await res.text();
  expect(html).not.toMatch(/<script src=|<link rel="stylesheet"|https?:\/\/(?!127\.0\.0\.1)/); // self-contained
  expect((await fetch(`${base}/events/latest`)).status).toBe(401);
  expect((await fetch(`${base}/crm-events`)).status).toBe(401);
});

it('asks for a token, then streams live once it is entered', async () => {
  await page.goto(`${base}/console`);
  await page.locator('#stream-state[data-state="error"]').waitFor();
  await page.locator('#notice', { hasText: 'paste a token' }).waitFor();
  await page.fill('#token', TOKEN);
  await page.click('#token-save');
  await page.locator('#stream-state[data-state="open"]').waitFor();
  await expect(page.textContent('#whoami')).resolves.toContain('console-operator · operator');
});

it('shows produced events newest first, shows nothing new while paused, and resumes', async () => {
  await produce(`${marker}-first`);
  await live(`${marker}-first`).waitFor();

  await page.click('#pause');
  await page.locator('#stream-state[data-state="paused"]').waitFor();
  await produce(`${marker}-paused`);
  // The stats count what arrived while paused: proof that it did arrive, and was not shown.
  await page.locator('#stream-stats[data-skipped="1"]').waitFor();
  expect(await live(`${marker}-paused`).count()).toBe(0);

  await page.click('#pause');
  await page.locator('#stream-state[data-state="open"]').waitFor();
  await produce(`${marker}-second`);
  await live(`${marker}-second`).waitFor();
  expect(await page.locator('#events li').first().textContent()).toContain(`${marker}-second`);
  expect(await live(`${marker}-paused`).count()).toBe(0);
});

it('filters on the event JSON', async () => {
  await page.fill('#filter', `${marker}-second`);
  await eventually(async () => (await shownLive().count()) === 1, 'one row left by the filter');
  expect(await shownLive().first().textContent()).toContain(`${marker}-second`);
  await page.fill('#filter', 'acme'); // matches the tenant_id field, not only the payload
  expect(await shownLive().count()).toBe(2);
  await page.fill('#filter', '');
  expect(await shownLive().count()).toBe(2);
});

it('downloads the buffer as JSONL, one event per line', async () => {
  const buffered = Number(await page.getAttribute('#stream-stats', 'data-buffered'));
  expect(buffered).toBe(2);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  expect(download.suggestedFilename()).toMatch(/^crm-events-.*\.jsonl$/);
  const text = await readFile(await download.path(), 'utf8');
  const lines = text.split('\n').filter((line) => line !== '');
  expect(lines).toHaveLength(buffered);
  const events = lines.map((line) => JSON.parse(line) as { kind: string; id: number; payload: { name: string } });
  expect(events.map((e) => e.payload.name)).toEqual([`${marker}-first`, `${marker}-second`]); // oldest first
  expect(events.every((e) => e.kind === 'domain_event' && Number.isInteger(e.id))).toBe(true);
});

it('replays a row of the latest events, and the replay arrives on the stream marked as one', async () => {
  const id = await journalId(`${marker}-first`);
  await page.click('#latest-refresh');
  await page.locator(`#latest-rows tr[data-id="${id}"] button`).click();
  const replayed = page.locator('#events li.replay[data-replay-count="1"]', { hasText: `${marker}-first` });
  await replayed.waitFor();
  expect(await replayed.locator('.badge.replay').textContent()).toBe('REPLAY ×1 operator_api');
  expect(await page.locator('#events li').first().getAttribute('class')).toContain('replay');

  // The replay workflow shows up in the list by itself, with a link to it in the Temporal UI.
  const link = page.locator('#replay-rows tr', { hasText: `replay-event-${id}` }).locator('a');
  await link.waitFor();
  expect(await link.getAttribute('href')).toMatch(
    new RegExp(`^${env.h.config.temporal.uiUrl}/namespaces/default/workflows/replay-event-${id}`),
  );
});

it('lists dead letters with a retry button that runs a retry', async () => {
  await env.h.send(env.h.topics.jobs, ['{not json']);
  const dlqId = await eventually(async () => {
    const { rows } = await env.h.pool.query<{ id: string }>('SELECT id FROM event_dlq ORDER BY id DESC LIMIT 1');
    return rows[0] && Number(rows[0].id);
  }, 'the poison message in the DLQ');
  await page.click('#dlq-refresh');
  await page.locator(`#dlq-rows tr[data-id="${dlqId}"] button`, { hasText: 'Retry' }).click();
  await page.locator('#notice', { hasText: `Retry of DLQ entry #${dlqId}` }).waitFor();
});

it('previews a range replay (dry run) with its counts by topic and tenant', async () => {
  const { rows } = await env.h.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM event_journal WHERE tenant_id = 'acme' AND replay_count = 0",
  );
  await page.fill('#range-tenant', 'acme');
  await page.click('#range-preview');
  await page.locator('#range-result .matched').waitFor();
  expect(Number(await page.textContent('#range-result .matched'))).toBe(rows[0].n);
  expect(await page.textContent('#range-result .by-topic')).toBe(`${env.h.topics.leads}: ${rows[0].n}`);
  expect(await page.textContent('#range-result .by-tenant')).toBe(`acme: ${rows[0].n}`);
});

it('starts a rate-limited range replay, follows its live progress and cancels it', async () => {
  await page.fill('#range-rate', '0.2'); // one event per page, then a 5 s pause: slow enough to watch and cancel
  page.once('dialog', (dialog) => void dialog.accept());
  await page.click('#range-replay');
  const link = page.locator('#range-result a');
  await link.waitFor();
  const workflowId = (await link.textContent())!;
  expect(await link.getAttribute('href')).toContain(`/workflows/${workflowId}`);
  const row = page.locator(`#replay-rows tr[data-workflow-id="${workflowId}"]`);
  // data-live is set only from GET /replays/:id, i.e. from the workflow's progress query while it runs.
  await row
    .locator('td.progress[data-live]')
    .waitFor()
    .catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await page.locator('#replay-rows').innerHTML()}`);
    });
  await row.locator('button', { hasText: 'Cancel' }).click();
  await page.locator(`#replay-rows tr[data-workflow-id="${workflowId}"][data-status="cancelled"]`).waitFor();
  await page.screenshot({ path: '/tmp/console.png' });
});

it('keeps the token across a reload, and raised no script or CSP error', async () => {
  await page.reload();
  await page.locator('#stream-state[data-state="open"]').waitFor();
  expect(await page.inputValue('#token')).toBe(TOKEN);
  expect(pageErrors).toEqual([]);
});

it('works without a token when auth is off', async () => {
  const config = { ...env.h.config, api: { ...env.h.config.api, jwtSecret: undefined } };
  const open = await buildTestApp(env.h, config);
  try {
    await open.listen({ host: '127.0.0.1', port: 0 });
    const fresh = await browser.newPage(); // a new context: no token in its localStorage
    try {
      await fresh.goto(`http://127.0.0.1:${(open.server.address() as { port: number }).port}/console`);
      await fresh.locator('#stream-state[data-state="open"]').waitFor();
      expect(await fresh.textContent('#whoami')).toContain('no token');
      await produce(`${marker}-no-auth`);
      await fresh.locator('#events li', { hasText: `${marker}-no-auth` }).waitFor();
      await fresh.click('#latest-refresh');
      await fresh.locator('#latest-rows tr', { hasText: 'acme' }).first().waitFor();
    } finally {
      await fresh.close();
    }
  } finally {
    await open.close();
  }
});

it('replays from the console with auth off: its calls carry X-Requested-By', async () => {
  const config = { ...env.h.config, api: { ...env.h.config.api, jwtSecret: undefined } };
  const open = await buildTestApp(env.h, config);
  const name = `${marker}-open-replay`;
  try {
    await open.listen({ host: '127.0.0.1', port: 0 });
    const fresh = await browser.newPage();
    try {
      await fresh.goto(`http://127.0.0.1:${(open.server.address() as { port: number }).port}/console`);
      await fresh.locator('#stream-state[data-state="open"]').waitFor();
      await produce(name);
      const id = await journalId(name);
      await fresh.click('#latest-refresh');
      await fresh.locator(`#latest-rows tr[data-id="${id}"] button`).click();
      await fresh.locator('#events li.replay[data-replay-count="1"]', { hasText: name }).waitFor();
      expect(await replaysOf(id)).toBe(1);
    } finally {
      await fresh.close();
    }
  } finally {
    await open.close();
  }
});

/**
 * A hostile page on another origin (localhost:<its port>, another site than the API's 127.0.0.1) trying the
 * requests a browser sends without asking: forms and no-cors fetches, plus a fetch that needs a preflight. Each form
 * posts into a frame of its own: on a busy machine a second submission into the same frame could cancel the first.
 */
const HOSTILE = (api: string, id: number) => `<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="POST" enctype="text/plain" target="sink1" action="${api}/replay/${id}">
  <input name='{"x":"' value='"}' /></form>
<form id="urlencoded" method="POST" target="sink2" action="${api}/replay/${id}"></form>
<script>
  window.attempts = (async () => {
    const url = '${api}/replay/${id}';
    const out = {};
    const settle = (key, p) => p.then((r) => (out[key] = r.type === 'opaque' ? 'opaque' : r.status), (e) => (out[key] = 'refused: ' + e.message));
    document.getElementById('plain').submit();
    await new Promise((r) => setTimeout(r, 300));
    document.getElementById('urlencoded').submit();
    await settle('no-cors text', fetch(url, { method: 'POST', mode: 'no-cors', body: 'replay please' }));
    await settle('no-cors empty', fetch(url, { method: 'POST', mode: 'no-cors' }));
    await settle('cors json', fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-requested-by': 'evil' }, body: '{}' }));
    return out;
  })();
</script></body></html>`;

async function serveHostile(html: () => string): Promise<{ origin: string; close: () => Promise<void> }> {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(html()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://localhost:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const replaysOf = async (id: number) => {
  const { rows } = await env.h.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM replay_audit WHERE event_id = $1',
    [id],
  );
  return rows[0].n;
};

it('lets no cross-origin page make a replay happen with auth off (forms, no-cors and CORS fetches)', async () => {
  const name = `${marker}-hostile`;
  await produce(name);
  const id = await journalId(name);
  let apiBase = '';
  const hostile = await serveHostile(() => HOSTILE(apiBase, id));
  const config = { ...env.h.config, api: { ...env.h.config.api, jwtSecret: undefined } };
  const open = await buildTestApp(env.h, config);
  try {
    await open.listen({ host: '127.0.0.1', port: 0 });
    apiBase = `http://127.0.0.1:${(open.server.address() as { port: number }).port}`;
    const victim = await browser.newPage();
    const answered: number[] = [];
    victim.on('response', (res) => {
      if (res.url().startsWith(`${apiBase}/replay/`) && res.request().method() === 'POST') answered.push(res.status());
    });
    try {
      await victim.goto(`${hostile.origin}/`);
      const results = await victim.evaluate(() => (globalThis as unknown as { attempts: Promise<unknown> }).attempts);
      // Each request did reach the API (or its preflight did) and was turned away.
      expect(results).toEqual({
        'no-cors text': 'opaque',
        'no-cors empty': 'opaque',
        'cors json': expect.stringMatching(/^refused: /),
      });
      await eventually(async () => answered.length >= 4 || undefined, 'the API to answer both forms and both fetches');
      expect(answered.sort()).toEqual([403, 415, 415, 415]);
      expect(await replaysOf(id)).toBe(0);

      // The same event is replayable, and the same page's fetch works once its origin is listed: the refusals above
      // come from the guard, not from a broken page.
      const listed = await buildTestApp(env.h, { ...config, api: { ...config.api, corsOrigins: [hostile.origin] } });
      try {
        await listed.listen({ host: '127.0.0.1', port: 0 });
        const listedBase = `http://127.0.0.1:${(listed.server.address() as { port: number }).port}`;
        const status = await victim.evaluate(
          async (url) =>
            (
              await fetch(url, {
                method: 'POST',
                headers: { 'content-type': 'application/json', 'x-requested-by': 'ops-page' },
                body: '{}',
              })
            ).status,
          `${listedBase}/replay/${id}`,
        );
        expect([200, 202]).toContain(status);
        expect(await replaysOf(id)).toBe(1);
      } finally {
        await listed.close();
      }
    } finally {
      await victim.close();
    }
  } finally {
    await open.close();
    await hostile.close();
  }
});
