import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createApiEnv, produceJournaled, type ApiEnv } from '../support/api';
import { eventually } from '../support/sink';

const run = promisify(execFile);
const CLI = path.resolve(__dirname, '../../dist/cli/main.js');
let env: ApiEnv;
let apiUrl: string;

beforeAll(async () => {
  env = await createApiEnv('cliclient', {
    // More replay-type requests than the default budget of 10 a minute run in this file; a fast machine sends them
    // within one minute (the rate limit itself is tested in test/api/auth.test.ts and test/api/shared-limits.test.ts).
    env: { DLQ_RETRY_SCHEDULE_ID: `cli-client-${Date.now()}`, API_REPLAY_RATE_LIMIT_PER_MINUTE: '1000' },
  });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  apiUrl = `http://127.0.0.1:${(env.app.server.address() as { port: number }).port}`;
});
afterAll(() => env?.close());

const cli = async (...args: string[]) => {
  const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
    env: { ...process.env, CRM_EVENTS_API_URL: apiUrl, LOG_LEVEL: 'warn' },
    timeout: 60_000,
  });
  return { stdout, stderr };
};

it('replays one event and reports it like the API does, counting the workflow in the metrics', async () => {
  const [id] = await produceJournaled(env.h, env.h.topics.leads, [{ tenant_id: 'acme', name: 'cli' }]);
  const { stdout } = await cli('replay', String(id));
  expect(JSON.parse(stdout)).toMatchObject({ status: 'replayed', event_id: id, tenant_id: 'acme', replay_count: 1 });
  const text = await env.h.metrics.registry.metrics();
  expect(text).toMatch(/crm_events_replay_workflows_total\{kind="single",status="completed"\} 1/);
  expect(text).toMatch(/crm_events_replay_published_total\{kind="single"\} 1/);
  expect(text).toMatch(/crm_events_replay_duration_seconds_count\{kind="single"\} 1/);
});

it('previews a range with --dry-run, then follows a real range replay with a progress bar to completion', async () => {
  await produceJournaled(
    env.h,
    env.h.topics.leads,
    Array.from({ length: 40 }, (_, i) => ({ tenant_id: 'cli-range', n: i })),
  );
  const window = ['--start', '2000-01-01T00:00:00Z', '--end', '2100-01-01T00:00:00Z', '--tenant', 'cli-range'];
  const preview = JSON.parse((await cli('replay', 'range', ...window, '--dry-run')).stdout);
  expect(preview).toMatchObject({ status: 'dry_run', matched: 40, by_tenant: { 'cli-range': 40 } });
  const { stdout, stderr } = await cli('replay', 'range', ...window, '--rate', '20');
  expect(stderr).toMatch(/Following replay-range-/);
  expect(stderr).toMatch(/replay \[.*\] 40\/40 published/);
  expect(JSON.parse(stdout)).toMatchObject({
    workflow_status: 'COMPLETED',
    result: { status: 'completed', published: 40 },
  });
});

it('range and batch replays take a payload filter, a transform (inline or from a file) and per-key ordering', async () => {
  const tenant = 'cli-options';
  // Two keys, interleaved; one event in three from a trade show.
  const ids: number[] = [];
  for (let i = 0; i < 6; i++) {
    const [id] = await produceJournaled(
      env.h,
      env.h.topics.leads,
      [{ tenant_id: tenant, n: i, name: `lead ${i}`, source: i % 3 === 0 ? 'trade-show' : 'web' }],
      { key: `account-${i % 2}` },
    );
    ids.push(id);
  }
  const patch = [
    { op: 'move', from: '/name', path: '/full_name' },
    { op: 'add', path: '/consumer', value: 'cli' },
  ];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-transform-'));
  const patchFile = path.join(dir, 'rename.json');
  fs.writeFileSync(patchFile, JSON.stringify(patch));
  const window = ['--start', '2000-01-01T00:00:00Z', '--end', '2100-01-01T00:00:00Z', '--tenant', tenant];
  const filter = ['--payload-filter', '$.source == "trade-show"'];

  const preview = JSON.parse(
    (await cli('replay', 'range', ...window, ...filter, '--transform-file', patchFile, '--dry-run')).stdout,
  );
  expect(preview).toMatchObject({ status: 'dry_run', matched: 2, transform: { patch } });
  expect(preview.sample).toEqual([
    expect.objectContaining({
      id: ids[0],
      payload: expect.objectContaining({ name: 'lead 0', source: 'trade-show' }),
      transformed: expect.objectContaining({ full_name: 'lead 0', consumer: 'cli' }),
    }),
    expect.objectContaining({ id: ids[3], transformed: expect.objectContaining({ full_name: 'lead 3' }) }),
  ]);

  const range = await cli(
    'replay',
    'range',
    ...window,
    ...filter,
    '--transform',
    JSON.stringify(patch),
    '--ordering',
    'per_key',
  );
  const ranged = JSON.parse(range.stdout);
  expect(ranged).toMatchObject({ workflow_status: 'COMPLETED', result: { status: 'completed', published: 2 } });
  const batch = await cli(
    'replay',
    'batch',
    ...ids.map(String),
    '--transform-file',
    patchFile,
    '--ordering',
    'per_key',
  );
  expect(JSON.parse(batch.stdout)).toMatchObject({
    workflow_status: 'COMPLETED',
    result: { status: 'completed', requested: 6, published: 6 },
  });

  // Both replays came back through Kafka into the journal, patched and naming the transform; the audit rows keep it.
  const workflows = [ranged.result.workflow_id, JSON.parse(batch.stdout).result.workflow_id];
  const { rows: audits } = await env.h.pool.query<{ workflow_id: string; filter: Record<string, unknown> }>(
    'SELECT workflow_id, filter FROM replay_audit WHERE workflow_id = ANY($1::text[]) ORDER BY kind DESC',
    [workflows],
  );
  expect(audits.map((a) => a.filter)).toEqual([
    expect.objectContaining({
      payloadFilter: '$.source == "trade-show"',
      ordering: 'per_key',
      transform: preview.transform,
    }),
    expect.objectContaining({ ordering: 'per_key', transform: preview.transform }),
  ]);
  const replayed = await eventually(async () => {
    const { rows } = await env.h.pool.query<{ workflow: string; from: string; payload: Record<string, unknown> }>(
      `SELECT payload->>'_replay_id' AS workflow, payload->>'_replayed_from_event_id' AS from, payload
         FROM event_journal WHERE payload->>'_replay_id' = ANY($1::text[]) ORDER BY id`,
      [workflows],
    );
    return rows.length === 8 ? rows : undefined;
  }, 'the 8 replayed events journaled');
  expect(replayed.filter((r) => r.workflow === workflows[0]).map((r) => Number(r.from))).toEqual([ids[0], ids[3]]);
  for (const { payload } of replayed) {
    expect(payload).toMatchObject({ consumer: 'cli', _replay_transform: preview.transform.id });
    expect(payload).not.toHaveProperty('name');
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

it('refuses a payload filter, a transform or an ordering the API refuses, with its message', async () => {
  const window = ['--start', '2000-01-01T00:00:00Z', '--end', '2100-01-01T00:00:00Z', '--dry-run'];
  const failure = (...args: string[]) =>
    cli('replay', ...args).then(
      () => {
        throw new Error(`replay ${args.join(' ')} succeeded`);
      },
      (e: { code: number; stderr: string }) => e,
    );
  const badFilter = await failure('range', ...window, '--payload-filter', '$.a ==');
  expect(badFilter).toMatchObject({ code: 1 });
  expect(badFilter.stderr).toMatch(
    /POST \/replay\/range → 400: body\/payload_filter is not a valid JSONPath predicate: syntax error/,
  );
  const lineage = await failure('range', ...window, '--transform', '[{"op":"remove","path":"/_replay_id"}]');
  expect(lineage.stderr).toMatch(/400: body\/transform cannot be applied: .* names the lineage field _replay_id/);
  const ordering = await failure('batch', '1', '--ordering', 'strict');
  expect(ordering.stderr).toMatch(/400: body\/ordering must be one of "page", "per_key"/);
  const notJson = await failure('range', ...window, '--transform', '[{op:"add"}]');
  expect(notJson.stderr).toMatch(/--transform is not JSON/);
});

it('lists, retries and repairs dead letters and shows the retry schedule', async () => {
  await env.h.send(env.h.topics.leads, ['{"name":"no tenant"}']);
  const listed = await (async () => {
    for (let i = 0; i < 50; i++) {
      const { stdout } = await cli('dlq', 'list');
      if (stdout.includes('missing_tenant')) return stdout;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('the dead letter never showed up in `dlq list`');
  })();
  const id = listed
    .split('\n')
    .find((l) => l.includes('missing_tenant'))!
    .split('\t')[0];
  const retried = JSON.parse((await cli('dlq', 'retry', id)).stdout);
  expect(retried).toMatchObject({ status: 'completed', attempted: 1, retrying: 1 });
  const patch = ['--patch', '[{"op":"add","path":"/tenant_id","value":"acme"}]'];
  const preview = JSON.parse((await cli('dlq', 'repair', '--ids', id, ...patch)).stdout);
  expect(preview).toMatchObject({ status: 'dry_run', would_journal: 1, entries: [{ id: Number(id) }] });
  const repaired = JSON.parse((await cli('dlq', 'repair', '--ids', id, ...patch, '--apply', '--reason', 'cli')).stdout);
  expect(repaired).toMatchObject({ status: 'completed', journaled: 1, invalid: 0 });
  const failed = await cli('dlq', 'schedule', 'show').catch((e: { stderr: string }) => e);
  expect(failed.stderr).toMatch(/404.*does not exist yet/); // no worker of this test created the schedule
});

it('fails with the API message when the request is refused', async () => {
  const err = await cli('replay', '999999').catch((e: { code: number; stderr: string }) => e);
  expect(err).toMatchObject({ code: 1 });
  expect((err as { stderr: string }).stderr).toMatch(/POST \/replay\/999999 → 404: Event 999999 not found/);
});
