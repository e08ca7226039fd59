import { findManifest, readSegment, type ArchiveStore } from '../../archive';
import { createJournalPartition, listJournalPartitions } from '../../repository/journal-partitions';
import { putRetentionRows } from '../../repository/retention';
import { withTransaction } from '../../shared/db';
import { strayObjects } from './archive';
import { shrinkConversionPartition } from './journal-history';
import type { SinkHarness } from './sink';

/**
 * Monthly journal partitions from January 2025 up to the conversion partition, the first `months` of them holding
 * `perMonth` rows of the leads topic (padded, to make segments of some size), and a 30-day retention on it: what the
 * journal maintenance archives and drops. `mixed`: each also holds 50 rows of the jobs topic, kept for ever, so
 * retention deletes the leads rows (delete_rows steps, a segment per topic slice) instead of dropping the partition.
 * The leads row ids of each seeded partition, by name.
 */
export async function seedExpiredPartitions(
  h: SinkHarness,
  opts: { months: number; perMonth: number; mixed: boolean; requestedBy: string },
): Promise<Map<string, number[]>> {
  const seeded = new Map<string, number[]>();
  const start = new Date(Date.UTC(2025, 0, 1));
  const first = await shrinkConversionPartition(h.pool, start);
  for (let m = 0; ; m++) {
    const from = new Date(Date.UTC(2025, m, 1));
    if (from >= first) break;
    const to = new Date(Date.UTC(2025, m + 1, 1));
    const name = `event_journal_p${from.getUTCFullYear()}_${String(from.getUTCMonth() + 1).padStart(2, '0')}`;
    await withTransaction(h.pool, (c) => createJournalPartition(c, name, from, to < first ? to : first));
    if (m < opts.months) {
      const { rows } = await h.pool.query<{ id: string }>(
        `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
         SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'n', n, 'pad', md5(n::text) || repeat('y', 150)),
                $2::timestamptz + n * interval '10 minutes', 'k' || n
           FROM generate_series(1, $3) AS n RETURNING id`,
        [h.topics.leads, from, opts.perMonth],
      );
      seeded.set(
        name,
        rows.map((r) => Number(r.id)),
      );
      if (opts.mixed) {
        await h.pool.query(
          `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
           SELECT 'acme', $1, jsonb_build_object('tenant_id', 'acme', 'kept', n), $2::timestamptz + n * interval '1 hour'
             FROM generate_series(1, 50) AS n`,
          [h.topics.jobs, from],
        );
      }
    }
  }
  await putRetentionRows(h.pool, { [h.topics.leads]: 30, [h.topics.jobs]: opts.mixed ? null : 30 }, opts.requestedBy);
  return seeded;
}

/**
 * The invariant of archiving the seeded partitions (docs/lifecycle.md, docs/archive.md "Writing and verifying"), after
 * the maintenance run `workflowId`: a partition is dropped only when every one of its rows is in a segment recorded by
 * the run (segment_archived) that reads back whole (readSegment with verify); a partition kept still holds every row
 * (and, mixed, its 50 kept rows); no object under segments/ is outside what the manifests account for.
 * `problems` and `stray` are empty when it holds; `states` says what became of each partition.
 */
export async function checkArchivedPartitions(
  h: SinkHarness,
  store: ArchiveStore,
  workflowId: string,
  seeded: Map<string, number[]>,
  mixed: boolean,
): Promise<{ states: Record<string, string>; problems: unknown[]; stray: string[] }> {
  const { rows: audit } = await h.pool.query<{ actions: Array<Record<string, unknown>> }>(
    `SELECT actions FROM lifecycle_audit WHERE workflow_id = $1`,
    [workflowId],
  );
  const actions = (audit[0]?.actions ?? []).filter((a) => a.action === 'segment_archived');
  const recordedFor = (partition: string) =>
    actions.find((a) => a.partition === partition && (!mixed || a.topic === h.topics.leads));
  const partitions = new Set((await listJournalPartitions(h.pool)).map((p) => p.name));
  const problems: unknown[] = [];
  const states: Record<string, string> = {};
  for (const [name, ids] of seeded) {
    let left = 0;
    if (partitions.has(name)) {
      const { rows } = await h.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${name} WHERE topic = $1`, [
        h.topics.leads,
      ]);
      left = rows[0].n;
      if (mixed) {
        const kept = await h.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${name} WHERE topic = $1`, [
          h.topics.jobs,
        ]);
        if (kept.rows[0].n !== 50) problems.push({ name, keptTopicRows: kept.rows[0].n });
      }
    }
    if (left === ids.length) {
      states[name] = `kept (${left} rows)`;
      continue;
    }
    if (left !== 0) problems.push({ name, partial: left, seeded: ids.length });
    const record = recordedFor(name);
    const segment = record ? String(record.segment) : name;
    const manifest = await findManifest(store, segment);
    const archived: number[] = [];
    let readError: string | undefined;
    if (manifest) {
      try {
        for await (const row of readSegment(store, manifest, { verify: true })) archived.push(row.id);
      } catch (err) {
        readError = (err as Error).message;
      }
    }
    const want = [...ids].sort((a, b) => a - b);
    const got = [...archived].sort((a, b) => a - b);
    states[name] =
      `removed; segment ${segment} ${manifest ? `${manifest.rows} rows` : 'missing'}; recorded ${!!record}`;
    if (!manifest || readError || JSON.stringify(want) !== JSON.stringify(got) || !record) {
      problems.push({
        name,
        segment,
        manifest: !!manifest,
        readError,
        archived: got.length,
        seeded: want.length,
        recorded: !!record,
      });
    }
  }
  return { states, problems, stray: await strayObjects(store, 'segments/') };
}
