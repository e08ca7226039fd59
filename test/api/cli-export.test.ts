import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { createApiEnv, type ApiEnv } from '../support/api';
import { journalPayloads } from '../support/payloads';

/** `crm-events-sink export` (the built CLI) against a listening API: the file holds what GET /events/export sends. */
const run = promisify(execFile);
const CLI = path.resolve(__dirname, '../../dist/cli/main.js');
let env: ApiEnv;
let apiUrl: string;
let dir: string;
let ids: number[];

beforeAll(async () => {
  env = await createApiEnv('cliexport', { ingest: false, worker: false });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  apiUrl = `http://127.0.0.1:${(env.app.server.address() as { port: number }).port}`;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-export-'));
  ids = await journalPayloads(
    env.h.pool,
    'cli-export',
    env.h.topics.leads,
    Array.from({ length: 2500 }, (_, i) => ({ n: i, source: i % 5 === 0 ? 'trade-show' : 'web' })),
  );
});
afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await env?.close();
});

const cli = (...args: string[]) =>
  run(process.execPath, [CLI, 'export', ...args], {
    env: { ...process.env, CRM_EVENTS_API_URL: apiUrl, LOG_LEVEL: 'warn' },
    timeout: 60_000,
  });

it('writes the filtered export to a file, line for line what the API sends, with a progress bar on stderr', async () => {
  const out = path.join(dir, 'trade-show.ndjson');
  const { stderr } = await cli('--out', out, '--tenant', 'cli-export', '--payload-filter', '$.source == "trade-show"');
  const written = fs.readFileSync(out, 'utf8');
  const fromApi = await (
    await fetch(
      `${apiUrl}/events/export?tenant_id=cli-export&payload_filter=${encodeURIComponent('$.source == "trade-show"')}`,
    )
  ).text();
  expect(written).toBe(fromApi);
  const lines = written.split('\n').slice(0, -1);
  expect(lines.map((l) => (JSON.parse(l) as { id: number }).id)).toEqual(ids.filter((_, i) => i % 5 === 0));
  expect(stderr).toMatch(/export \[.*\] 100% of the journal \| 500 rows/);
  expect(stderr).toContain(`Wrote 500 events to ${out}`);
});

it('with --gzip writes a gzip file of the same lines', async () => {
  const plain = path.join(dir, 'all.ndjson');
  const gz = path.join(dir, 'all.ndjson.gz');
  await cli('--out', plain, '--tenant', 'cli-export');
  await cli('--out', gz, '--tenant', 'cli-export', '--gzip');
  expect(gunzipSync(fs.readFileSync(gz)).equals(fs.readFileSync(plain))).toBe(true);
  expect(fs.readFileSync(plain, 'utf8').split('\n')).toHaveLength(2501);
});

it('fails with the API message for an invalid payload filter and writes no file', async () => {
  const out = path.join(dir, 'bad.ndjson');
  const err = await cli('--out', out, '--payload-filter', '$.a ==').catch((e: { code: number; stderr: string }) => e);
  expect(err).toMatchObject({ code: 1 });
  expect((err as { stderr: string }).stderr).toMatch(
    /GET \/events\/export\?payload_filter=.* → 400: querystring\/payload_filter is not a valid JSONPath predicate: syntax error/,
  );
  expect(fs.existsSync(out)).toBe(false);
});
