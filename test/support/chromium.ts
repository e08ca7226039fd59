import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's chromium package (scripts/test.sh installs it); playwright-core drives it, it downloads no browser. */
export const CHROMIUM = '/usr/bin/chromium';

/** A headless Chromium for the console tests; `args` adds switches (e.g. --ignore-certificate-errors). */
export async function launchChromium(args: string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the console tests need Debian's chromium (apt-get install -y chromium)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...args,
    ],
  });
}

/**
 * A page of its own (1440 x 1000) for a console test; script errors and CSP violations (which Chromium reports on the
 * console) are pushed onto `errors`. The 401s of the panels' calls before a token is saved are expected, not errors.
 */
export async function consolePage(browser: Browser, errors: string[]): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1440, height: 1000 } })).newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of 401/.test(msg.text()))
      errors.push(`${msg.text()} (${msg.location().url})`);
  });
  return page;
}
