import fs from 'node:fs';
import path from 'node:path';

/**
 * Attack on issue 14 point 5 (docs/operations.md): claims that test/unit/operations-doc.test.ts does not cover,
 * because they are not bold measurements nor `a / b = c` arithmetic.
 */
const ROOT = path.join(__dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');
const doc = read('docs/operations.md');

/** The row of the "What to scale when" table whose first cell starts with `symptom`. */
const scaleRow = (symptom: string) => doc.split('\n').find((line) => line.startsWith(`| ${symptom}`))!;

it('the Postgres connection bound counts every connection an API pod opens', () => {
  const row = scaleRow('`/events` or stream latency');
  const bound = /Postgres connections, at most (.+?) \|/.exec(row)![1];
  // The overlay's sizes (deploy/base/kustomization.yaml), one API pod and no ingest or worker pod.
  const pools = { DATABASE_POOL_SIZE: 10, API_DATABASE_POOL_SIZE: 4 };
  const expression = bound
    .replace(/ \([^)]*\)$/, '') // a closing remark, e.g. what a term is
    .replace('(ingest + worker + API pods)', '1')
    .replaceAll('API pods', '1')
    .replaceAll('ingest pods', '0')
    .replace(/`(\w+)`/g, (_, name: keyof typeof pools) => String(pools[name]))
    .replace(/×/g, '*');
  expect(expression).toMatch(/^[\d\s*+]+$/);
  const documented = expression
    .split('+')
    .map((term) => term.split('*').reduce((product, factor) => product * Number(factor), 1))
    .reduce((sum, term) => sum + term, 0);

  // What an API process opens (cli/commands/serve.ts, cli/commands/api.ts, api/app.ts): the runtime's pool
  // (DATABASE_POOL_SIZE, cli/runtime.ts), the API's pool (API_DATABASE_POOL_SIZE, cli/commands/api.ts), and the live
  // stream's own LISTEN connection (api/live/journal-feed.ts, started by buildApp for every API process).
  expect(read('cli/runtime.ts')).toMatch(/createPool\(config\.databaseUrl, config\.databasePoolSize/);
  expect(read('cli/commands/api.ts')).toMatch(/createPool\(\s*config\.databaseUrl,\s*config\.api\.databasePoolSize/);
  expect(read('api/app.ts')).toMatch(/new JournalFeed\(config\.databaseUrl[\s\S]*await feed\.start\(\)/);
  const streamClients = (read('api/live/journal-feed.ts').match(/new pg\.Client\(/g) ?? []).length;
  expect(streamClients).toBe(1);
  const opened = pools.DATABASE_POOL_SIZE + pools.API_DATABASE_POOL_SIZE + streamClients;

  // "at most": the bound may be above what is opened, never below.
  expect({ bound, documented, opened, covers: documented >= opened }).toEqual({
    bound,
    documented,
    opened,
    covers: true,
  });
});

it('the scaling advice for slow range replays knows that a large range is split across workers', () => {
  const row = scaleRow('range replays slow');
  // README "Sharded range replay": REPLAY_SHARD_THRESHOLD / REPLAY_SHARDS split a range into child workflows
  // that run on every worker; the table still says one workflow on one worker and names neither setting.
  expect(read('README.md')).toContain('is split into `REPLAY_SHARDS` child workflows on the same task queue');
  expect(row).not.toMatch(/a range replay is one workflow on one worker/);
  expect(row).toMatch(/REPLAY_SHARDS/);
});
