import fs from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createArchiveStore, deleteSegment, findManifest, listSegments, readSegment } from '../../archive';
import { createActivities } from '../../activities';
import { nextPeriod, partitionName } from '../../lifecycle/periods';
import { createJournalPartition, listJournalPartitions } from '../../repository/journal-partitions';
import { putRetentionRows } from '../../repository/retention';
import { withTransaction } from '../../shared/db';
import type { MaintenanceResult } from '../../workflows/definitions';
import { shrinkConversionPartition } from '../support/journal-history';
import type { SinkHarness } from '../support/sink';
import { activityDeps, createTimeSkippingWorld, inActivity } from '../support/temporal';

// The journal maintenance workflow (docs/lifecycle.md, points 3 and 4 of the lifecycle issue) with its real
// activities on a real Postgres and a real archive directory: partitions ahead, retention per topic, archive before
// drop, verified. The invariant: journal rows + archived rows = rows ever journaled, each row in exactly one of them,
// byte for byte; nothing within retention is touched.

let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
const taskQueue = 'journal-maintenance-test';
/** An activity called as a Temporal worker runs it (in an activity context: its heartbeat, its cancellation). */

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('maintenance', taskQueue, {
    JOURNAL_RETENTION: 'leads:400,jobs:90',
  }));
  await history();
}, 120_000);
afterAll(() => close?.());

const PER_MONTH = 40;

/**
 * Makes the database look like one partitioned since January 2025: the conversion's partition shrunk to end there,
 * a partition per month up to the current ones, and rows in each month for leads and jobs (and quotes, kept
 * forever, in March 2025 only).
 */
async function history() {
  const start = new Date(Date.UTC(2025, 0, 1));
  const first = await shrinkConversionPartition(h.pool, start);
  for (let from = start; from < first; from = nextPeriod(from, 'month')) {
    const to = nextPeriod(from, 'month');
    await withTransaction(h.pool, (client) => createJournalPartition(client, partitionName(from, 'month'), from, to));
    await seedMonth(from, [
      'leads',
      'jobs',
      ...(from.getUTCMonth() === 2 && from.getUTCFullYear() === 2025 ? ['quotes'] : []),
    ]);
  }
}

async function seedMonth(from: Date, topics: string[]) {
  await h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
     SELECT 'acme', t, jsonb_build_object('tenant_id', 'acme', 'n', g, 'big', 123456789012345678901234567890,
                                          'text', 'Zoë ' || g || ' ☃'),
            $1::timestamptz + make_interval(hours => g * 7), 'k' || g
       FROM unnest($2::text[]) AS t, generate_series(0, ${PER_MONTH - 1}) AS g`,
    [from, topics],
  );
}

/** Every journal row as text (all columns), by id. */
async function journalRows(): Promise<Map<number, string>> {
  const { rows } = await h.pool.query<{ id: number; t: string }>('SELECT id, j::text AS t FROM event_journal j');
  return new Map(rows.map((r) => [r.id, r.t]));
}

let run = 0;
const maintain = (dryRun = false): Promise<MaintenanceResult> =>
  env.client.workflow.execute('journalMaintenanceWorkflow', {
    taskQueue,
    workflowId: `journal-maintenance-test-${++run}`,
    args: [{ trigger: 'operator', requestedBy: 'test', dryRun }],
    workflowExecutionTimeout: '10m',
  });

it('a dry run plans and removes nothing', async () => {
  const before = await journalRows();
  const result = await maintain(true);
  expect(result.steps.length).toBeGreaterThan(0);
  expect(result.steps.every((s) => !s.applied && s.segment === null)).toBe(true);
  expect(await journalRows()).toEqual(before);
  expect(await listSegments(createArchiveStore(h.config.archive))).toEqual([]);
});

it('archives, verifies and only then drops or deletes what retention expires; the rest is untouched', async () => {
  const before = await journalRows();
  const { rows: topicMonths } = await h.pool.query<{ topic: string; month: string; n: number }>(
    `SELECT topic, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, count(*)::int AS n
       FROM event_journal GROUP BY 1, 2`,
  );
  const result = await maintain();
  const dropped = result.steps.filter((s) => s.action === 'drop_partition' && s.applied).map((s) => s.partition);
  // leads' cutoff is 400 days before today, jobs' 90: whole months older than both go, except March 2025 (quotes).
  expect(dropped).toContain('event_journal_p2025_01');
  expect(dropped).not.toContain('event_journal_p2025_03');
  const partitions = (await listJournalPartitions(h.pool)).map((p) => p.name);
  for (const name of dropped) expect(partitions).not.toContain(name);
  expect(partitions).toContain('event_journal_p2025_03');

  // Each row is either still in the journal or in exactly one archived segment, byte for byte the same columns.
  const after = await journalRows();
  const store = createArchiveStore(h.config.archive);
  const archived = new Map<number, string>();
  for (const manifest of await listSegments(store)) {
    for await (const row of readSegment(store, manifest)) {
      expect(archived.has(row.id)).toBe(false);
      archived.set(row.id, JSON.stringify(row));
    }
  }
  expect(after.size + archived.size).toBe(before.size);
  for (const id of before.keys()) expect(after.has(id) !== archived.has(id)).toBe(true);
  for (const [id, text] of after) expect(text).toBe(before.get(id));
  // The archived payloads are the journaled ones, digit for digit.
  const sample = [...archived.values()].map((t) => JSON.parse(t) as { payload: string }).slice(0, 5);
  for (const row of sample) expect(row.payload).toContain('123456789012345678901234567890');

  // What remains: quotes kept forever; no jobs row older than 90 days, no leads row older than 400.
  const { rows: left } = await h.pool.query<{ topic: string; oldest: Date; n: number }>(
    'SELECT topic, min(received_at) AS oldest, count(*)::int AS n FROM event_journal GROUP BY topic',
  );
  const byTopic = Object.fromEntries(left.map((r) => [r.topic, r]));
  expect(byTopic.quotes.n).toBe(PER_MONTH);
  const day = 86_400_000;
  expect(Date.now() - byTopic.jobs.oldest.getTime()).toBeLessThan(92 * day);
  expect(Date.now() - byTopic.leads.oldest.getTime()).toBeLessThan(402 * day);
  // Nothing within retention went: every month newer than the cutoffs kept all its rows.
  const kept = topicMonths.filter((r) => r.month >= '2026-10' && r.topic !== 'quotes');
  for (const r of kept) {
    const { rows } = await h.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM event_journal WHERE topic = $1
          AND to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM') = $2`,
      [r.topic, r.month],
    );
    expect({ ...r, n: rows[0].n }).toEqual(r);
  }

  // The audit says what was done, step by step; it holds no payload.
  const { rows: audit } = await h.pool.query(
    "SELECT status, actions FROM lifecycle_audit WHERE workflow_id = 'journal-maintenance-test-2'",
  );
  expect(audit[0].status).toBe('completed');
  const actions = (audit[0].actions as Array<{ action: string }>).map((a) => a.action);
  expect(actions).toContain('segment_archived');
  expect(actions).toContain('partition_dropped');
  expect(actions).toContain('rows_deleted');
  expect(JSON.stringify(audit[0].actions)).not.toContain('Zoë');
});

it('a second run finds nothing left to do and archives nothing twice', async () => {
  const before = await journalRows();
  const segments = (await listSegments(createArchiveStore(h.config.archive))).map((m) => m.segment).sort();
  const result = await maintain();
  expect(result.steps.filter((s) => s.applied)).toEqual([]);
  expect(await journalRows()).toEqual(before);
  expect((await listSegments(createArchiveStore(h.config.archive))).map((m) => m.segment).sort()).toEqual(segments);
});

it('a segment that no longer verifies stops the step: nothing is dropped', async () => {
  const activities = createActivities(activityDeps(h));
  // March 2025 holds quotes, kept forever: with quotes at 1 day for this test, retention plans to drop it.
  await putRetentionRows(h.pool, { quotes: 1 }, 'test');
  try {
    const step = (await activities.planJournalRetention({ now: Date.now() })).find(
      (s) => s.partition === 'event_journal_p2025_03',
    )!;
    expect(step).toMatchObject({ action: 'drop_partition' });
    const archivedStep = await inActivity(() => activities.archiveRetentionStep({ workflowId: 'manual', step }));
    expect(archivedStep.segment).toBe('event_journal_p2025_03');
    const store = createArchiveStore(h.config.archive);
    const manifest = (await findManifest(store, 'event_journal_p2025_03'))!;
    const file = path.join(h.config.archive.dir, manifest.file.key);
    const bytes = await fs.readFile(file);
    expect(gunzipSync(bytes).toString()).toContain('quotes');
    bytes[bytes.length - 12] ^= 0xff;
    await fs.writeFile(file, bytes);
    await expect(
      inActivity(() =>
        activities.applyRetentionStep({ workflowId: 'manual', step, segment: 'event_journal_p2025_03' }),
      ),
    ).rejects.toThrow(/failed verification/);
    expect((await listJournalPartitions(h.pool)).map((p) => p.name)).toContain('event_journal_p2025_03');
  } finally {
    await putRetentionRows(h.pool, { quotes: null }, 'test');
  }
});

it('archives nothing while an erasure runs: the step fails retryably and nothing is written or removed', async () => {
  const activities = createActivities(activityDeps(h));
  const step = {
    action: 'delete_rows' as const,
    partition: 'event_journal_p2025_03',
    topic: 'quotes',
    before: '2025-04-01T00:00:00.000Z',
  };
  await h.pool.query(
    "INSERT INTO lifecycle_audit (workflow_id, kind, status) VALUES ('erasure-running-test', 'erasure', 'running')",
  );
  try {
    const err = await inActivity(() => activities.archiveRetentionStep({ workflowId: 'manual', step })).catch(
      (e: Error) => e,
    );
    expect(err).toMatchObject({ type: 'ErasureInProgress', nonRetryable: false });
    expect(
      await findManifest(createArchiveStore(h.config.archive), 'event_journal_p2025_03.quotes.before-20250401'),
    ).toBeUndefined();
    const { rows } = await h.pool.query("SELECT count(*)::int AS n FROM event_journal WHERE topic = 'quotes'");
    expect(rows[0].n).toBe(PER_MONTH);
  } finally {
    await h.pool.query("DELETE FROM lifecycle_audit WHERE workflow_id = 'erasure-running-test'");
  }
});

it('a segment no run recorded (its attempt ended before the erasure check) is written again, not trusted', async () => {
  const activities = createActivities(activityDeps(h));
  const store = createArchiveStore(h.config.archive);
  const segment = 'event_journal_p2025_03';
  // March 2025 holds only quotes by now: with quotes at 1 day, retention plans to drop it.
  await putRetentionRows(h.pool, { quotes: 1 }, 'test');
  try {
    const step = (await activities.planJournalRetention({ now: Date.now() })).find((s) => s.partition === segment)!;
    expect(step).toMatchObject({ action: 'drop_partition' });
    await deleteSegment(store, segment); // the one the test before corrupted
    // 'manual' has no lifecycle_audit row: the attempt writes its segment and records nothing, as one cancelled or
    // killed between the segment's manifest and its record would.
    const first = await inActivity(() => activities.archiveRetentionStep({ workflowId: 'manual', step }));
    expect(first).toEqual({ segment, rows: PER_MONTH });
    // An erasure that ran while that segment was written did not see it (no manifest yet): the row is gone from the
    // journal, and still in the segment.
    const { rowCount } = await h.pool.query(
      `DELETE FROM event_journal WHERE topic = 'quotes' AND payload->>'n' = '0' AND received_at < '2025-04-01'`,
    );
    expect(rowCount).toBe(1);
    const again = await inActivity(() => activities.archiveRetentionStep({ workflowId: 'manual', step }));
    expect(again).toEqual({ segment, rows: PER_MONTH - 1 });
    const archived = [];
    for await (const row of readSegment(store, segment)) archived.push(row);
    expect(archived).toHaveLength(PER_MONTH - 1);
    expect(archived.filter((row) => (row.payload as { n?: number }).n === 0)).toEqual([]);
  } finally {
    await deleteSegment(store, segment);
    await putRetentionRows(h.pool, { quotes: null }, 'test');
  }
});
