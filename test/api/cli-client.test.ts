import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { createApiEnv, produceJournaled, type ApiEnv } from '../support/api';

const run = promisify(execFile);
const CLI = path.resolve(__dirname, '../../dist/cli/main.js');
let env: ApiEnv;
let apiUrl: string;

beforeAll(async () => {
  env = await createApiEnv('cliclient', { env: { DLQ_RETRY_SCHEDULE_ID: `cli-client-${Date.now()}` } });
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
