import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { selfSignedPair } from '../../shared/tls';
import { buildTestApp, createApiEnv, type ApiEnv } from '../support/api';
import { launchChromium } from '../support/chromium';
import { uniqueSuffix } from '../support/env';
import { eventually } from '../support/sink';

/**
 * Issue 11, point 8 in a real Chromium: ten console tabs on one origin. Over HTTPS the browser negotiates HTTP/2 and
 * multiplexes all ten live streams on one connection, so every tab gets every event. Over plain HTTP/1.1 the same
 * browser opens at most six connections per host, each held by one tab's EventSource, and the other tabs wait for
 * one of them to close — the contrast that makes the first test mean something. The API runs in process on the real
 * stack (ingest journals what is produced), once with a self-signed certificate and once without, on one database.
 */
jest.setTimeout(180_000);

const TABS = 10;
/** Chromium's limit of HTTP/1.1 connections per host (net::ClientSocketPoolManager's normal pool). */
const HTTP1_CONNECTIONS_PER_HOST = 6;

let env: ApiEnv;
let plain: Awaited<ReturnType<typeof buildTestApp>>;
let tlsDir: string;
let httpsBase: string;
let httpBase: string;
let browser: Browser;

beforeAll(async () => {
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'console-h2-'));
  const { cert, key } = await selfSignedPair(tlsDir);
  env = await createApiEnv('console-h2', { worker: false, tls: { cert, key } });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  httpsBase = `https://127.0.0.1:${(env.app.server.address() as { port: number }).port}`;
  plain = await buildTestApp(env.h);
  await plain.listen({ host: '127.0.0.1', port: 0 });
  httpBase = `http://127.0.0.1:${(plain.server.address() as { port: number }).port}`;
  browser = await launchChromium(['--ignore-certificate-errors']);
});

afterAll(async () => {
  await browser?.close();
  await plain?.close();
  await env?.close();
  fs.rmSync(tlsDir, { recursive: true, force: true });
});

const produce = (name: string) => env.h.send(env.h.topics.leads, [{ tenant_id: 'acme', name }]);

/** Whether a tab shows the stream open; a tab still waiting for its page (or mid-load) is not live. */
const isLive = (page: Page) =>
  page
    .locator('#stream-state[data-state="open"]')
    .count()
    .then((n) => n === 1)
    .catch(() => false);
const shows = (page: Page, name: string) =>
  page
    .locator('#events li', { hasText: name })
    .count()
    .then((n) => n > 0)
    .catch(() => false);
const countOf = async (pages: Page[], check: (page: Page) => Promise<boolean>) =>
  (await Promise.all(pages.map(check))).filter(Boolean).length;

async function openTabs(context: BrowserContext, url: string): Promise<Page[]> {
  const pages: Page[] = [];
  for (let i = 0; i < TABS; i++) pages.push(await context.newPage());
  // Not awaited: over HTTP/1.1 the later tabs cannot even load their page while six streams hold the connections.
  for (const page of pages) void page.goto(url, { timeout: 0 }).catch(() => undefined);
  return pages;
}

it('over HTTPS, ten tabs speak HTTP/2 and every tab receives the live events', async () => {
  const context = await browser.newContext();
  try {
    const pages = await openTabs(context, `${httpsBase}/console`);
    await eventually(async () => (await countOf(pages, isLive)) === TABS, `all ${TABS} tabs live over HTTPS`);
    // The protocol each tab's page came over, as the page itself sees it (this project's TypeScript has no DOM types).
    const protocols = await Promise.all(
      pages.map((page) => page.evaluate('performance.getEntriesByType("navigation")[0].nextHopProtocol')),
    );
    expect(protocols).toEqual(Array(TABS).fill('h2'));

    const names = [`h2-${uniqueSuffix()}-a`, `h2-${uniqueSuffix()}-b`];
    for (const name of names) await produce(name);
    for (const name of names) {
      await eventually(async () => (await countOf(pages, (p) => shows(p, name))) === TABS, `${name} in every tab`);
    }
  } finally {
    await context.close();
  }
});

it('over plain HTTP/1.1, the same ten tabs do not all go live: six hold the connections, the others wait for them', async () => {
  const context = await browser.newContext();
  try {
    const pages = await openTabs(context, `${httpBase}/console`);
    await eventually(
      async () => (await countOf(pages, isLive)) === HTTP1_CONNECTIONS_PER_HOST,
      `${HTTP1_CONNECTIONS_PER_HOST} tabs live over HTTP/1.1`,
    );
    const first = `h1-${uniqueSuffix()}`;
    await produce(first);
    const live = await Promise.all(pages.map(isLive));
    const livePages = pages.filter((_, i) => live[i]);
    await eventually(
      async () => (await countOf(livePages, (p) => shows(p, first))) === livePages.length,
      `${first} in the live tabs`,
    );
    // The event reached the live tabs, and only them: four tabs got nothing, and still are not live.
    expect(await countOf(pages, (p) => shows(p, first))).toBe(HTTP1_CONNECTIONS_PER_HOST);
    expect(await countOf(pages, isLive)).toBe(HTTP1_CONNECTIONS_PER_HOST);

    // Closing four live tabs frees their connections: the waiting tabs load, go live and get the next event, so it
    // was the connection limit that kept them out, not anything broken in them.
    const waiting = pages.filter((_, i) => !live[i]);
    for (const page of livePages.slice(0, TABS - HTTP1_CONNECTIONS_PER_HOST)) await page.close();
    await eventually(async () => (await countOf(waiting, isLive)) === waiting.length, 'the waiting tabs live');
    const second = `h1-${uniqueSuffix()}-after`;
    await produce(second);
    await eventually(
      async () => (await countOf(waiting, (p) => shows(p, second))) === waiting.length,
      `${second} in the tabs that had been waiting`,
    );
  } finally {
    await context.close();
  }
});
