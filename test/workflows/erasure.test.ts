import { MockActivityEnvironment, type TestWorkflowEnvironment } from '@temporalio/testing';
import { type ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { collect, plainRow } from '../support/archive';
import { readManifest, readSegment, verifySegment, writeSegment, type ArchiveStore } from '../../archive';
import { createErasureActivities } from '../../activities/erasure';
import { subjectHash, type ErasureTarget } from '../../lifecycle/erasure-target';
import { erasureCounts, forgetErasureSubject, storeErasureSubject } from '../../repository/erasure';
import { ensureServiceKey } from '../../repository/service-keys';
import type { ErasureInput, ErasureResult } from '../../workflows/erasure';
import { findValue, seedSubject } from '../support/erasure';
import { dlqEntry } from '../support/dlq';
import { eventually } from '../support/sink';
import { createDlqActivities } from '../../activities/dlq-retry';
import { insertDlqEntries } from '../../repository/event-dlq';
import type { SinkHarness } from '../support/sink';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { activityDeps, createTimeSkippingWorld, inActivity, workflowBundle } from '../support/temporal';

let env: TestWorkflowEnvironment;
let h: SinkHarness;
let close: () => Promise<void>;
const taskQueue = 'erasure-test';

beforeAll(async () => {
  ({ env, h, close } = await createTimeSkippingWorld('erasurewf', taskQueue));
});
afterAll(() => close?.());

let run = 0;
/** Stores the target under its hash (as the API does) and runs the workflow with real activities. */
async function erase(target: ErasureTarget, input: Partial<ErasureInput> = {}) {
  const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
  await storeErasureSubject(h.pool, hash, target);
  const workflowId = `erasure-test-${++run}`;
  const result: ErasureResult = await env.client.workflow.execute('erasureWorkflow', {
    taskQueue,
    workflowId,
    args: [{ subjectHash: hash, requestedBy: 'test-admin', windowIds: 2, ...input }],
    workflowExecutionTimeout: '1m',
  });
  return { hash, workflowId, result };
}

const ids = async (table: string, list: number[]) =>
  (await h.pool.query<{ id: string }>(`SELECT id::text FROM ${table} WHERE id = ANY($1::bigint[])`, [list])).rows
    .map((r) => Number(r.id))
    .sort((a, b) => a - b);

it('erases a data subject from the journal, the DLQ and the archive, records ids and counts, and keeps the rest', async () => {
  const seed = await seedSubject(h.pool, h.archive, h.topics.leads);
  expect((await findValue(h.pool, h.archive, seed.value)).length).toBeGreaterThan(0);
  const before = await readManifest(h.archive, seed.segment);

  const { hash, workflowId, result } = await erase({ kind: 'subject', field: 'email', value: seed.value });

  expect(result).toEqual({
    status: 'completed',
    erasure_id: workflowId,
    journal_rows: 4,
    dlq_rows: 3,
    archive_segments: 1,
    archive_rows: 4,
  });
  expect(await ids('event_journal', seed.erasedJournalIds)).toEqual([]);
  expect(await ids('event_journal', seed.keptJournalIds)).toEqual(seed.keptJournalIds);
  expect(await ids('event_dlq', seed.erasedDlqIds)).toEqual([]);
  expect(await ids('event_dlq', seed.keptDlqIds)).toEqual(seed.keptDlqIds);
  const { rows: erased } = await h.pool.query<{ event_id: string; erasure_id: string }>(
    'SELECT event_id::text, erasure_id FROM erased_events WHERE erasure_id = $1 ORDER BY event_id',
    [workflowId],
  );
  // The archived rows' ids too: reads answer 410 for them, and a cold replay that opened the segment leaves them out.
  expect(erased.map((r) => Number(r.event_id))).toEqual([...seed.erasedJournalIds, ...seed.erasedArchiveIds]);

  // The segment: a new generation without the subject's rows, verified, counts updated; the clean one untouched.
  const after = await verifySegment(h.archive, seed.segment);
  expect(after).toMatchObject({ rows: 2, generation: before.generation + 1, rewrite: { dropped: 4, kept: 2 } });
  expect((await collect(readSegment(h.archive, after))).map((r) => r.id)).toEqual(seed.keptArchiveIds.slice(0, 2));
  expect((await readManifest(h.archive, `${seed.segment}_clean`)).generation).toBe(1);

  // Nothing anywhere holds the value: Postgres (every table, erasure_subjects included) and every archive file.
  expect(await findValue(h.pool, h.archive, seed.value)).toEqual([]);

  const { rows: audit } = await h.pool.query('SELECT * FROM lifecycle_audit WHERE workflow_id = $1', [workflowId]);
  expect(audit[0]).toMatchObject({
    kind: 'erasure',
    status: 'completed',
    requested_by: 'test-admin',
    request: { target: 'subject', field: 'email', subject_hash: hash },
  });
  expect(audit[0].actions).toEqual([
    expect.objectContaining({ action: 'erased', journal_rows: 4, dlq_rows: 3, archive_segments: 1, archive_rows: 4 }),
  ]);
  expect(JSON.stringify(audit[0])).not.toContain(seed.value);
});

it('a single replay of an erased id fails as EventErased, naming the erasure, without retrying', async () => {
  const seed = await seedSubject(h.pool, h.archive, h.topics.leads);
  const { workflowId } = await erase({ kind: 'subject', field: 'email', value: seed.value });
  const err = await env.client.workflow
    .execute('replayEventWorkflow', {
      taskQueue,
      workflowId: `erasure-test-replay-${++run}`,
      args: [{ eventId: seed.erasedJournalIds[0], source: 'operator_api' }],
      workflowExecutionTimeout: '1m',
    })
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const failure = (err as WorkflowFailedError).cause?.cause as { type?: string; message?: string };
  expect(failure.type).toBe('EventErased');
  expect(failure.message).toContain(workflowId);
});

it('erases a lead id given as a string from rows where it is a number, and no other number', async () => {
  const [erasedRow, keptRow] = (
    await h.pool.query<{ id: string }>(
      `INSERT INTO event_journal (tenant_id, topic, payload) VALUES
         ('acme', $1, '{"lead_id": 123456789012345678901234567890}'),
         ('acme', $1, '{"lead_id": 123456789012345678901234567891, "ref": 123456789012345678901234567890}')
       RETURNING id::text`,
      [h.topics.leads],
    )
  ).rows.map((r) => Number(r.id));
  const { result } = await erase({ kind: 'subject', field: 'lead_id', value: '123456789012345678901234567890' });
  expect(result).toMatchObject({ journal_rows: 1, dlq_rows: 0, archive_rows: 0 });
  expect(await ids('event_journal', [erasedRow, keptRow])).toEqual([keptRow]);
});

it('offboards a tenant: every journal row, its dead letters and archived rows of the tenant, nobody else', async () => {
  const tenant = `gone-${Date.now().toString(36)}`;
  const { rows } = await h.pool.query<{ id: string; tenant_id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload)
     SELECT t, $2, jsonb_build_object('tenant_id', t, 'n', n) FROM unnest(ARRAY[$1, $1, $1, 'stays']) AS t,
            generate_series(1, 3) AS n
     RETURNING id::text, tenant_id`,
    [tenant, h.topics.jobs],
  );
  await h.pool.query(
    `INSERT INTO event_dlq (topic, tenant_id, payload, error, reason) VALUES
       ($2, NULL, jsonb_build_object('tenantId', $1::text), 'refused', 'db_error'),
       ($2, 'stays', '{"tenant_id": "stays"}', 'refused', 'db_error')`,
    [tenant, h.topics.jobs],
  );
  // Segments are named after partitions: nothing in the name is the tenant's.
  const segment = `seg_tenant_${Date.now().toString(36)}`;
  await writeSegment(h.archive, {
    segment,
    table: 'event_journal',
    rows: [1, 2, 3].map((i) => plainRow(800_000_000 + i, `{"n": ${i}}`, { tenant_id: i === 2 ? 'stays' : tenant })),
  });
  const { result } = await erase({ kind: 'tenant', value: tenant });
  expect(result).toMatchObject({ journal_rows: 9, dlq_rows: 1, archive_segments: 1, archive_rows: 2 });
  expect((await collect(readSegment(h.archive, segment))).map((r) => r.tenant_id)).toEqual(['stays']);
  const left = await h.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM event_journal WHERE tenant_id = $1', [
    tenant,
  ]);
  expect(left.rows[0].n).toBe(0);
  expect(
    await ids(
      'event_journal',
      rows.filter((r) => r.tenant_id === 'stays').map((r) => Number(r.id)),
    ),
  ).toHaveLength(3);
  expect(await findValue(h.pool, h.archive, tenant)).toEqual([]);
});

it('activities retried after a crash delete nothing twice and count nothing twice', async () => {
  const seed = await seedSubject(h.pool, h.archive, h.topics.leads);
  const target: ErasureTarget = { kind: 'subject', field: 'email', value: seed.value };
  const subject = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
  await storeErasureSubject(h.pool, subject, target);
  const activities = createErasureActivities(activityDeps(h));
  const ref = { erasureId: `erasure-retry-${Date.now()}`, subjectHash: subject };
  const twice = async (step: () => Promise<unknown>) => {
    await new MockActivityEnvironment().run(step);
    await new MockActivityEnvironment().run(step);
  };
  await activities.recordErasureStarted(ref);
  await twice(() => activities.eraseRows({ ...ref, table: 'event_journal', afterId: 0, windowIds: 3 }));
  await twice(() => activities.eraseRows({ ...ref, table: 'event_dlq', afterId: 0, windowIds: 3 }));
  await twice(() => activities.eraseArchiveRows(ref));
  // A retry resumes from its last heartbeat: the windows before it are not scanned again, and nothing is lost.
  await new MockActivityEnvironment({ heartbeatDetails: 0 }).run(() =>
    activities.eraseRows({ ...ref, table: 'event_journal', afterId: 0, windowIds: 3 }),
  );
  expect(await erasureCounts(h.pool, ref.erasureId)).toEqual({
    journal: { rows: 4, segments: 0 },
    dlq: { rows: 3, segments: 0 },
    archive: { rows: 4, segments: 1 },
  });
  await activities.recordErasureFinished({ ...ref, status: 'completed' });
  await activities.recordErasureFinished({ ...ref, status: 'completed' });
  const { rows } = await h.pool.query('SELECT status, actions FROM lifecycle_audit WHERE workflow_id = $1', [
    ref.erasureId,
  ]);
  expect(rows[0].status).toBe('completed');
  expect(rows[0].actions).toHaveLength(1);
  expect(await findValue(h.pool, h.archive, seed.value)).toEqual([]);
});

it('fails without retrying when the subject is no longer stored (its value is never in the workflow input)', async () => {
  const err = await env.client.workflow
    .execute('erasureWorkflow', {
      taskQueue,
      workflowId: `erasure-test-${++run}`,
      args: [{ subjectHash: 'f'.repeat(64) }],
      workflowExecutionTimeout: '1m',
    })
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect((err as WorkflowFailedError).cause?.cause).toMatchObject({ type: 'InvalidRequest' });
});

it('erases a subject row whose id was taken before the first pass ended and that committed after it', async () => {
  // Ids are taken when a row is inserted, not when it commits: ingest's transaction holds the subject's row (id N)
  // while another batch commits N+1, and the first journal pass covers both ids without seeing N. The row commits
  // while the archive is rewritten (the step between the two passes): the second pass must erase it.
  const value = 'late-commit@example.com';
  const writer = await h.pool.connect();
  const lateQueue = `${taskQueue}-late-commit`;
  const real = createActivities(activityDeps(h));
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: lateQueue,
    workflowBundle: await workflowBundle(),
    activities: {
      ...real,
      eraseArchiveRows: async (ref: Parameters<typeof real.eraseArchiveRows>[0]) => {
        await writer.query('COMMIT');
        return real.eraseArchiveRows(ref);
      },
    },
  });
  try {
    await writer.query('BEGIN');
    const { rows } = await writer.query<{ id: string }>(
      `INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('acme', $1, jsonb_build_object('email', $2::text))
       RETURNING id::text`,
      [h.topics.leads, value],
    );
    const lateId = Number(rows[0].id);
    await h.pool.query(`INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('acme', $1, '{"n": 1}')`, [
      h.topics.leads,
    ]);
    const target: ErasureTarget = { kind: 'subject', field: 'email', value };
    const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
    await storeErasureSubject(h.pool, hash, target);
    const workflowId = `erasure-test-${++run}`;
    const result = await worker.runUntil(
      env.client.workflow.execute('erasureWorkflow', {
        taskQueue: lateQueue,
        workflowId,
        args: [{ subjectHash: hash, requestedBy: 'test-admin', windowIds: 2 }],
        workflowExecutionTimeout: '1m',
      }),
    );
    expect(result).toMatchObject({ status: 'completed', journal_rows: 1 });
    expect(await ids('event_journal', [lateId])).toEqual([]);
    expect(await findValue(h.pool, h.archive, value)).toEqual([]);
  } finally {
    await writer.query('ROLLBACK').catch(() => undefined);
    writer.release();
  }
});

it('two erasures at once over one segment each leave their subject out of it (rewrites of a segment take turns)', async () => {
  const suffix = Date.now().toString(36);
  const tenants = [`first-${suffix}`, `second-${suffix}`];
  const segment = `seg_two_erasures_${suffix}`;
  // Enough rows that both rewrites are under way at once: each reads the generation in force, and both would write
  // the next one under the same key, the second switching the manifest to a file that still holds the first's rows.
  const rows = Array.from({ length: 3000 }, (_, i) =>
    plainRow(810_000_000 + i, `{"n": ${i}}`, { tenant_id: i % 3 === 2 ? 'stays' : tenants[i % 3] }),
  );
  await writeSegment(h.archive, { segment, table: 'event_journal', rows });
  // The two archive passes themselves, at once (the time-skipping server would skip the second's wait).
  const activities = createErasureActivities(activityDeps(h));
  const passes = tenants.map(async (tenant, i) => {
    const target: ErasureTarget = { kind: 'tenant', value: tenant };
    const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
    await storeErasureSubject(h.pool, hash, target);
    const erasureId = `erasure-two-${suffix}-${i}`;
    await inActivity(() => activities.eraseArchiveRows({ erasureId, subjectHash: hash }));
    await forgetErasureSubject(h.pool, hash, erasureId); // as the workflow's last step does
    return (await erasureCounts(h.pool, erasureId)).archive.rows;
  });
  expect(await Promise.all(passes)).toEqual([1000, 1000]);
  const left = await collect(readSegment(h.archive, segment));
  expect({ rows: left.length, tenants: [...new Set(left.map((r) => r.tenant_id))] }).toEqual({
    rows: 1000,
    tenants: ['stays'],
  });
  for (const tenant of tenants) expect(await findValue(h.pool, h.archive, tenant)).toEqual([]);
});

it('on a store that ignores If-Match, fails without retrying before any rewrite, naming it; the segment is untouched', async () => {
  const seed = await seedSubject(h.pool, h.archive, h.topics.leads);
  const before = await readManifest(h.archive, seed.segment);
  // A server that ignores If-Match on PUT, as the workers see it: every conditional replace is a plain put.
  const blind: ArchiveStore = {
    ...h.archive,
    replaceIfVersion: (key, body) => h.archive.put(key, body).then(() => undefined),
  };
  const blindQueue = `${taskQueue}-blind`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: blindQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities({ ...activityDeps(h), archive: blind }),
  });
  const target: ErasureTarget = { kind: 'subject', field: 'email', value: seed.value };
  const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
  await storeErasureSubject(h.pool, hash, target);
  const workflowId = `erasure-test-${++run}`;
  const err = await worker
    .runUntil(
      env.client.workflow.execute('erasureWorkflow', {
        taskQueue: blindQueue,
        workflowId,
        args: [{ subjectHash: hash, windowIds: 2 }],
        workflowExecutionTimeout: '1m',
      }),
    )
    .catch((e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const failure = (err as WorkflowFailedError).cause?.cause as ApplicationFailure;
  expect(failure).toMatchObject({ type: 'ArchiveConditionalWriteError', nonRetryable: true });
  expect(failure.message).toContain('If-Match');
  // The archived segment is as it was (its rows with the value included); the audit says why the erasure failed.
  expect(await readManifest(h.archive, seed.segment)).toEqual(before);
  const { rows } = await h.pool.query('SELECT status, error FROM lifecycle_audit WHERE workflow_id = $1', [workflowId]);
  expect(rows[0]).toMatchObject({ status: 'failed', error: expect.stringContaining('If-Match') });
});

it('a DLQ retry racing the erasure journals its row after the first journal pass: the second pass erases it', async () => {
  const value = `erase-retried-${Date.now().toString(36)}@example.com`;
  const [dead] = await insertDlqEntries(h.pool, [
    dlqEntry(h.topics.leads, {
      tenantId: 'acme',
      reason: 'db_error',
      payloadJson: JSON.stringify({ tenant_id: 'acme', email: value }),
      error: 'Insert into event_journal failed: a CHECK since dropped (SQLSTATE 23514)',
    }),
  ]);
  const deadId = Number(dead.id);
  // A slow journal insert of this subject's rows (any slow disk or lock would do): it waits for the holder's lock.
  const gate = 0x5e7a1;
  await h.pool.query(`
    CREATE FUNCTION erasure_test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF strpos(NEW.payload::text, 'erase-retried-') > 0 THEN PERFORM pg_advisory_xact_lock_shared(${gate}); END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER erasure_test_gate BEFORE INSERT ON event_journal FOR EACH ROW EXECUTE FUNCTION erasure_test_gate()`);
  const holder = await h.pool.connect();
  const waitersOn = async (pattern: string) =>
    (
      await h.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE $1`,
        [pattern],
      )
    ).rows[0].n;
  try {
    await holder.query('SELECT pg_advisory_lock($1)', [gate]);
    // The retry locks its dead letter, then waits in its journal insert.
    const retry = createDlqActivities(activityDeps(h)).retryDlqEntries({ ids: [deadId], now: Date.now(), force: true });
    await eventually(async () => (await waitersOn('%INSERT INTO event_journal%')) === 1, 'the retry waiting');

    const target: ErasureTarget = { kind: 'subject', field: 'email', value };
    const hash = subjectHash(await ensureServiceKey(h.pool, 'erasure'), target);
    await storeErasureSubject(h.pool, hash, target);
    const activities = createErasureActivities(activityDeps(h));
    const ref = { erasureId: `erasure-dlq-race-${Date.now()}`, subjectHash: hash };
    const pass = (table: 'event_journal' | 'event_dlq') =>
      inActivity(() => activities.eraseRows({ ...ref, table, afterId: 0, windowIds: 1000 }));
    await pass('event_journal');
    // The DLQ pass waits for the retry's lock on the dead letter; the retry then journals it and commits.
    const dlqPass = pass('event_dlq');
    await eventually(async () => (await waitersOn('%DELETE FROM event_dlq%')) === 1, 'the DLQ pass waiting');
    await holder.query('SELECT pg_advisory_unlock($1)', [gate]);
    expect(await retry).toMatchObject({ resolved: 1 });
    await dlqPass;
    const journaled = await h.pool.query<{ id: string }>(
      'SELECT id::text FROM event_journal WHERE strpos(payload::text, $1) > 0',
      [value],
    );
    // The race happened: after the first journal pass, the retried dead letter is a journal row of the subject.
    expect(journaled.rows).toHaveLength(1);
    await inActivity(() => activities.eraseArchiveRows(ref));
    await pass('event_journal');
    await pass('event_dlq');
    await forgetErasureSubject(h.pool, hash, ref.erasureId);
    expect(await ids('event_journal', [Number(journaled.rows[0].id)])).toEqual([]);
    expect(await ids('event_dlq', [deadId])).toEqual([]);
    expect(await erasureCounts(h.pool, ref.erasureId)).toMatchObject({ journal: { rows: 1 }, dlq: { rows: 1 } });
    expect(await findValue(h.pool, h.archive, value)).toEqual([]);
  } finally {
    await holder.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    holder.release();
    await h.pool.query('DROP TRIGGER erasure_test_gate ON event_journal; DROP FUNCTION erasure_test_gate()');
  }
});
