import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';

/**
 * api/console/, found from the compiled (dist/api/routes) or source (api/routes) location: the build compiles only
 * TypeScript, so the assets are read from the source tree in both cases (the Dockerfile copies them to /app/api).
 */
export const CONSOLE_DIR = path.resolve(
  __dirname,
  __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../../api/console' : '../console',
);

const STYLESHEET = /<link rel="stylesheet" href="([\w.-]+\.css)" \/>/g;
const SCRIPT = /<script src="([\w.-]+\.js)"><\/script>/g;

export interface ConsolePage {
  html: string;
  /** Content-Security-Policy that allows exactly the inlined scripts and styles, and calls to this origin only. */
  csp: string;
}

/**
 * The console as one document: index.html with its stylesheets and scripts inlined. One document keeps the page a
 * single public route (its assets would otherwise need auth, and a <script> tag cannot send a bearer token) and lets
 * the CSP pin each inlined block by hash.
 */
export function renderConsole(dir = CONSOLE_DIR): ConsolePage {
  const read = (name: string) => readFileSync(path.join(dir, name), 'utf8');
  const inline = (name: string) => {
    const text = read(name);
    if (/<\/(script|style)/i.test(text)) {
      throw new Error(`${path.join(dir, name)} contains a closing </script> or </style>; it cannot be inlined`);
    }
    return text;
  };
  const hash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
  const scripts: string[] = [];
  const styles: string[] = [];
  const html = read('index.html')
    .replace(STYLESHEET, (_tag, name: string) => {
      const css = inline(name);
      styles.push(hash(css));
      return `<style>${css}</style>`;
    })
    .replace(SCRIPT, (_tag, name: string) => {
      const js = inline(name);
      scripts.push(hash(js));
      return `<script>${js}</script>`;
    });
  if (scripts.length === 0) throw new Error(`${path.join(dir, 'index.html')} references no script to inline`);
  const csp = [
    "default-src 'none'",
    `script-src ${scripts.join(' ')}`,
    `style-src ${styles.join(' ')}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}

/** GET /console: the operator console page, public (its API calls carry the operator's token). */
const consoleRoutes: FastifyPluginAsync<{ dir?: string }> = async (app, { dir }) => {
  // Read once at start: a missing or broken asset stops the API from starting, naming the file.
  const page = renderConsole(dir);
  app.get('/console', { schema: { hide: true } }, async (_request, reply) =>
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      .header('content-security-policy', page.csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(page.html),
  );
};

export default consoleRoutes;
