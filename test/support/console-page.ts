import type { Browser, Page } from 'playwright-core';
import { createApiEnv, type ApiEnv, type ApiEnvOptions } from './api';
import { consolePage, launchChromium } from './chromium';

/** The API listening on a free port, and a Chromium page recording script errors and failed calls (but 401s). */
export interface ConsoleSession {
  env: ApiEnv;
  base: string;
  page: Page;
  /** Script errors and console errors (a 401 before a token is saved is expected and left out). */
  pageErrors: string[];
  close(): Promise<void>;
}

/** A console test's setup: the service on the real stack, listening, and a headless Chromium page on it. */
export async function openConsoleSession(label: string, opts: ApiEnvOptions = {}): Promise<ConsoleSession> {
  const env = await createApiEnv(label, opts);
  let browser: Browser | undefined;
  try {
    await env.app.listen({ host: '127.0.0.1', port: 0 });
    browser = await launchChromium();
    const pageErrors: string[] = [];
    const page = await consolePage(browser, pageErrors);
    const opened = browser;
    return {
      env,
      base: `http://127.0.0.1:${(env.app.server.address() as { port: number }).port}`,
      page,
      pageErrors,
      close: async () => {
        await opened.close();
        await env.close();
      },
    };
  } catch (err) {
    await browser?.close();
    await env.close();
    throw err;
  }
}
