import { TestWorkflowEnvironment } from '@temporalio/testing';
import { createActivities, type Activities } from '../../activities';
import { DLQ_PIN_WAIT_MS, insertDlqEntries } from '../../repository/event-dlq';
import { createPool, type Pool, type PoolClient } from '../../shared/db';
import type { DlqBulkResult, DlqRepairResult } from '../../workflows/definitions';
import { dlqEntry } from '../support/dlq';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { advisoryLockWaits, untilAdvisoryLockWaits } from '../support/table-lock';
import { activityDeps, runWithActivities, testServerPath } from '../support/temporal';

/**
 * attack60 (helper review of the DLQ's pins: activities/dlq-bulk.ts planDlqBulk, activities/dlq-repair.ts
 * startDlqRepair, repository/event-dlq.ts countDlqBulk / countDlq / dlqBulkPage / dlqPage, after attack54 fixed the
 * same pattern for range replays).
 *
 * Invariant (repository/event-dlq.ts DlqBulkCount.max_id: "a bulk action acts on no entry written after it was
 * planned"; workflows/dlq-repair.ts: a repair acts on the entries "up to the newest id they had when it started"): a
 * bulk action or a repair acts on exactly the entries of its filter at its pin; a dead letter committed later is
 * wholly in or wholly out, and a bulk action's reported counts add up (done = matched, the audit's published =
 * matched when nothing else moves the entries).
 *
 * Attack: two dead letters a and b of the filter are written through the DLQ's own writer (insertDlqEntries, as
 * ingest's batch transaction writes them), each in a transaction left open on a client of its own, between
 * committed ones (5, a, 5, b, 5). A bulk park (pages of 5) and a repair (pages of 5) are started while both are
 * open; each holder commits as late as it can: b once the first page was read (the cursor still below b), a once a
 * page's cursor passed a; or both as soon as the pin waits for them (without that the plan could never end).
 *
 * Observed (on a46a17b): the bulk park planned 15 (matched 15) and parked 16 (done 16, the audit's published 16):
 * b, committed before the cursor reached it, was parked; a, committed after the cursor passed it, was left pending.
 * The repair likewise recorded an outcome for b and none for a. Whether a dead letter committed after the pin is
 * acted on depends on when its transaction commits relative to the cursor, and a bulk action reports more entries
 * done than it matched.
 *
 * Suspected cause: event_dlq ids come from a sequence when ingest's transaction writes and become visible when it
 * commits, in any order: max(id) at planning (countDlqBulk, countDlq) says nothing of lower ids still uncommitted,
 * while the keyset pages (`id > cursor AND id <= maxId`) see such an entry only if it commits before the cursor
 * passes it.
 *
 * Fixed: insertDlqEntries takes the DLQ's append lock in its shared form in the statement that draws the ids, and
 * both plans count holding its exclusive form (repository/event-dlq.ts pinDlqBulk, pinDlqSelection): every id at or
 * below the pin then belongs to a transaction that has ended. Here both pins wait for a and b: the park matches and
 * parks 17, the repair records all 17. (Since attack62 a pin holds the lock only to read the newest id, and the plan
 * counts after it, up to that id.)
 */
jest.setTimeout(180_000);

let env: TestWorkflowEnvironment;
let h: SinkHarness;
let holders: Pool;
const taskQueue = 'attack60';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: testServerPath() } },
  });
  h = await createSinkHarness('attack60');
  holders = createPool(h.databaseUrl, 2, h.log);
});
afterAll(async () => {
  await holders?.end();
  await h?.close();
  await env?.teardown();
});

/** A dead letter (no tenant, a payload without one) of `topic`, lead `i`. */
const deadLetter = (topic: string, i: number) =>
  dlqEntry(topic, {
    reason: 'missing_tenant',
    payloadJson: JSON.stringify({ lead_id: i }),
    error: 'Event has no tenant',
  });

/** `n` committed dead letters of `topic`: their ids. */
async function committed(topic: string, from: number, n: number): Promise<number[]> {
  const entries = Array.from({ length: n }, (_, i) => deadLetter(topic, from + i));
  return (await insertDlqEntries(h.pool, entries)).map((r) => Number(r.id));
}

/** A dead letter in an open transaction: the DLQ's own writer has taken its id; commit() ends it. */
interface OpenDeadLetter {
  id: number;
  commit(): Promise<void>;
}

async function openDeadLetter(topic: string, i: number): Promise<OpenDeadLetter> {
  const client: PoolClient = await holders.connect();
  await client.query('BEGIN');
  const [row] = await insertDlqEntries(client, [deadLetter(topic, i)]);
  let ended = false;
  return {
    id: Number(row.id),
    async commit() {
      if (ended) return;
      ended = true;
      await client.query('COMMIT');
      client.release();
    },
  };
}

/** Runs `plan`, committing both open dead letters only if it waits for them (a pin). */
async function planning<T>(plan: Promise<T>, open: OpenDeadLetter[]): Promise<T> {
  let done = false;
  const result = plan.finally(() => (done = true));
  while (!done) {
    if (await advisoryLockWaits(h.pool)) for (const o of open) await o.commit();
    await sleep(20);
  }
  return result;
}

/** 5 committed, a (open), 5 committed, b (open), 5 committed: the ids, a and b. */
async function seed(topic: string) {
  const ids = await committed(topic, 0, 5);
  const a = await openDeadLetter(topic, 100);
  ids.push(...(await committed(topic, 5, 5)));
  const b = await openDeadLetter(topic, 200);
  ids.push(...(await committed(topic, 10, 5)));
  return { ids, a, b };
}

/** Runs a workflow on a worker whose activities are the real ones, some wrapped. */
const run = <R>(
  workflow: string,
  workflowId: string,
  input: unknown,
  wrap: (real: Activities) => Partial<Activities>,
) => runWithActivities<R>(env, h, { taskQueue, workflow, workflowId, input }, wrap);

it('a bulk action acts on exactly the entries it matched at its pin, and its counts add up', async () => {
  const topic = 'apexflow.attack60-bulk';
  const { ids, a, b } = await seed(topic);
  const result = await run<DlqBulkResult>(
    'dlqBulkWorkflow',
    'attack60-bulk-park',
    { action: 'park', filter: { topic }, source: 'operator_api', requestedBy: 'ops', pageSize: 5 },
    (real) => ({
      planDlqBulk: (input) => planning(real.planDlqBulk(input), [a, b]),
      // b commits once a page was read (the cursor below it), a once a page's cursor passed it.
      readDlqBulkPage: async (input) => {
        const page = await real.readDlqBulkPage(input);
        await b.commit();
        if ((page.at(-1) ?? 0) > a.id) await a.commit();
        return page;
      },
    }),
  );
  await a.commit();
  await b.commit();

  const { rows } = await h.pool.query<{ id: string; status: string }>(
    'SELECT id, status FROM event_dlq WHERE topic = $1 ORDER BY id',
    [topic],
  );
  const parked = rows.filter((r) => r.status === 'parked').map((r) => Number(r.id));
  const audit = (
    await h.pool.query('SELECT matched, published FROM replay_audit WHERE workflow_id = $1', ['attack60-bulk-park'])
  ).rows[0];
  expect({ matched: result.matched, done: result.done, audit }).toEqual({
    matched: 17,
    done: 17,
    audit: { matched: 17, published: 17 },
  });
  expect(parked).toEqual([...ids, a.id, b.id].sort((x, y) => x - y));
});

it('a repair acts on exactly the entries of its selection at its pin', async () => {
  const topic = 'apexflow.attack60-repair';
  const { ids, a, b } = await seed(topic);
  const result = await run<DlqRepairResult>(
    'dlqRepairWorkflow',
    'attack60-repair',
    {
      selection: { topic },
      edit: { patch: [{ op: 'add', path: '/tenant_id', value: 'acme' }] },
      requestedBy: 'ops',
      pageSize: 5,
    },
    (real) => ({
      startDlqRepair: (input) => planning(real.startDlqRepair(input), [a, b]),
      repairDlqPage: async (input) => {
        const page = await real.repairDlqPage(input);
        await b.commit();
        if (page.cursor > a.id) await a.commit();
        return page;
      },
    }),
  );
  await a.commit();
  await b.commit();

  const { rows } = await h.pool.query<{ dlq_id: string }>(
    'SELECT dlq_id FROM dlq_repair_entries WHERE repair_id = $1 ORDER BY dlq_id',
    ['attack60-repair'],
  );
  expect(rows.map((r) => Number(r.dlq_id))).toEqual([...ids, a.id, b.id].sort((x, y) => x - y));
  expect(result).toMatchObject({ journaled: 17, invalid: 0, skipped: 0 });
});

it('a pin that waits past DLQ_PIN_WAIT_MS for a dead letter fails (to be retried), and writers behind it go on', async () => {
  const activities = createActivities(activityDeps(h));
  const topic = 'apexflow.attack60-stuck';
  const stuck = await openDeadLetter(topic, 300);
  try {
    const started = Date.now();
    const plan = activities.planDlqBulk({ action: 'park', filter: { topic } });
    expect(await untilAdvisoryLockWaits(h.pool)).toBe(true);
    // A dead letter written while the pin waits queues behind it, and goes on once the pin gives up.
    let queued = true;
    const behind = openDeadLetter(topic, 301).finally(() => (queued = false));
    await sleep(500);
    expect(queued).toBe(true);
    const err = await plan.catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('55P03');
    expect(Date.now() - started).toBeGreaterThanOrEqual(DLQ_PIN_WAIT_MS);
    const next = await behind;
    expect(next.id).toBeGreaterThan(stuck.id);
    await next.commit();
  } finally {
    await stuck.commit();
  }
});
