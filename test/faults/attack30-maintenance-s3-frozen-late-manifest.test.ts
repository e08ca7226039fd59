import { checkArchivedPartitions, seedExpiredPartitions } from '../support/expired-partitions';
import { terminate } from '../support/ingest-process';
import { MANIFEST_PUT, s3TriggerProxy, type TriggerProxy } from '../support/s3-trigger-proxy';
import { s3WorkerProcesses, type WorkerProcesses } from '../support/worker-process';
import { createS3World, type S3World } from '../support/s3-world';
import { uniqueSuffix } from '../support/env';

/**
 * attack30 (area A, maintenance): journal maintenance archiving expired partitions to S3 on a real `worker`; the S3
 * server is frozen (SIGSTOP of its process) at a chosen request: as the manifest PUT of a segment reaches it (the
 * server applies it once resumed, after the worker gave up on it), right after that PUT, or at a random request;
 * SIGTERM to the worker while it is frozen; SIGCONT and a new worker, which finishes the maintenance.
 *
 * Invariants: the worker exits 0 within SHUTDOWN_TIMEOUT; a partition is dropped only when every one of its rows is in
 * a segment recorded by the run that reads back whole (readSegment, verify); a partition kept still holds every row;
 * no object under segments/ is outside what the manifests account for. A30_CUT=at-manifest|after-manifest|<n>.
 */
jest.setTimeout(170_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;

const MONTHS = 4;
const PER_MONTH = 3000;
// A30_MIXED=1: each partition also holds rows of a topic kept for ever, so retention deletes the expired topic's rows
// (delete_rows steps, a segment per topic slice) instead of dropping the partition.
const MIXED = process.env.A30_MIXED === '1';
const SEED = { months: MONTHS, perMonth: PER_MONTH, mixed: MIXED, requestedBy: 'attack30' };
let w: S3World;
let proxy: TriggerProxy;
let workers: WorkerProcesses;
const queue = `a30-mntcut-${uniqueSuffix()}`;
let seeded: Map<string, number[]>;

beforeAll(async () => {
  w = await createS3World('a30mntcut');
  proxy = await s3TriggerProxy(w.bucket.config);
  seeded = await seedExpiredPartitions(w.h, SEED);
  workers = s3WorkerProcesses(w.h, queue, w.bucket.config, {
    ARCHIVE_S3_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
    SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
  });
}, 120_000);

afterAll(async () => {
  proxy?.thaw(); // first: S3 must not stay stopped whatever fails below
  await workers?.close();
  await proxy?.close();
  await w?.close();
});

it('S3 frozen mid-maintenance (late manifest PUT), SIGTERM, new worker: no partition dropped without its segment', async () => {
  const cutEnv =
    process.env.A30_CUT ??
    ['at-manifest', 'after-manifest', String(Math.floor(Math.random() * 40))][Math.floor(Math.random() * 3)];
  let sawManifest = false;
  proxy.arm((line, index) => {
    if (cutEnv === 'at-manifest') return MANIFEST_PUT.test(line);
    if (cutEnv === 'after-manifest') {
      if (sawManifest) return true;
      sawManifest = MANIFEST_PUT.test(line);
      return false;
    }
    return index === Number(cutEnv);
  });
  let worker = await workers.start();
  const workflowId = `a30-mnt-${uniqueSuffix()}`;
  const handle = await w.client.workflow.start('journalMaintenanceWorkflow', {
    taskQueue: queue,
    workflowId,
    args: [{ trigger: 'operator', requestedBy: 'attack30' }],
  });
  const deadline = Date.now() + 40_000;
  while (!proxy.frozenAt && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  await new Promise((res) => setTimeout(res, 500 + Math.floor(Math.random() * 1500)));
  const { exit, stopMs } = await terminate(worker, SHUTDOWN_TIMEOUT_MS + 10_000);
  worker.kill('SIGKILL');
  const frozenAt = proxy.frozenAt;
  proxy.thaw();
  worker = await workers.start();
  const result = await Promise.race([
    handle.result().catch((err: Error) => ({ failed: err.message })),
    new Promise((res) => setTimeout(() => res({ failed: 'not finished in 80 s' }), 80_000)),
  ]);
  await terminate(worker, 15_000);

  const { states, problems, stray } = await checkArchivedPartitions(w.h, w.store, workflowId, seeded, MIXED);
  console.log(JSON.stringify({ cut: cutEnv, frozenAt, exit, stopMs, result, states, problems, stray }));
  expect({ exit, inTime: stopMs < SHUTDOWN_TIMEOUT_MS, problems, stray }).toEqual({
    exit: 0,
    inTime: true,
    problems: [],
    stray: [],
  });
});
