import type { Admin } from 'kafkajs';
import pg from 'pg';
import type { DlqRow, IngestRows, JournalRow, PartitionOffsets, Produced, ReplayRow } from './check';

const LINEAGE = `'_replayed_from_event_id' - '_replay_source' - '_replay_id' - '_replay_count'`;

/** Columns of migration 007 that this database has (the checks use them when they exist). */
async function columns(db: pg.Client, table: string): Promise<Set<string>> {
  const { rows } = await db.query<{ c: string }>(
    `SELECT column_name AS c FROM information_schema.columns WHERE table_name = $1`,
    [table],
  );
  return new Set(rows.map((r) => r.c));
}

const b64 = (b: Buffer | null) => (b === null ? null : b.toString('base64'));

/**
 * Rows older than a run on a database that outlives it (the cluster profile's): journal and DLQ rows with ids up to
 * these were stored before the run produced anything, so they can hold none of its records nor replays.
 */
export interface CollectScope {
  afterJournalId: number;
  afterDlqId: number;
}

/**
 * Everything the checker needs from Postgres: journal, DLQ, replay rows compared to their originals in SQL (all of
 * them, or those after `scope`).
 */
export async function collectDatabase(
  databaseUrl: string,
  produced: Omit<Produced, 'canonical'>[],
  scope: CollectScope = { afterJournalId: 0, afterDlqId: 0 },
) {
  const db = new pg.Client({ connectionString: databaseUrl, statement_timeout: 120_000 });
  await db.connect();
  try {
    const jCols = await columns(db, 'event_journal');
    const dCols = await columns(db, 'event_dlq');
    // jsonb's canonical text of each produced value (NULL when jsonb refuses it), from the session's own function.
    await db.query(`CREATE FUNCTION pg_temp.soak_canonical(b bytea) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN RETURN convert_from(b, 'UTF8')::jsonb::text; EXCEPTION WHEN others THEN RETURN NULL; END $$`);
    const canon = await db.query<{ t: string | null }>(
      `SELECT pg_temp.soak_canonical(v) AS t FROM unnest($1::bytea[]) WITH ORDINALITY AS u(v, i) ORDER BY i`,
      [produced.map((p) => (p.value === null ? null : Buffer.from(p.value, 'base64')))],
    );
    const withCanonical: Produced[] = produced.map((p, i) => ({ ...p, canonical: canon.rows[i].t }));

    const keyBytes = jCols.has('kafka_key_bytes') ? ', kafka_key_bytes' : '';
    const journal = await db.query(
      `SELECT id, topic, kafka_partition, kafka_offset::text AS kafka_offset, payload::text AS payload, replay_count${keyBytes}
         FROM event_journal WHERE id > $1`,
      [scope.afterJournalId],
    );
    const journalRows: JournalRow[] = journal.rows.map((r) => ({
      id: Number(r.id),
      topic: r.topic,
      partition: r.kafka_partition,
      offset: r.kafka_offset,
      payload: r.payload,
      replayCount: r.replay_count,
      ...(keyBytes ? { keyBytes: b64(r.kafka_key_bytes) } : {}),
    }));
    const rawBytes = dCols.has('raw_bytes') ? ', raw_bytes' : '';
    const status = dCols.has('status') ? 'status' : `'open' AS status`;
    const dlq = await db.query(
      `SELECT id, topic, kafka_partition, kafka_offset::text AS kafka_offset, payload::text AS payload, raw_value, ${status}${rawBytes}
         FROM event_dlq WHERE id > $1`,
      [scope.afterDlqId],
    );
    const dlqRows: DlqRow[] = dlq.rows.map((r) => ({
      id: Number(r.id),
      topic: r.topic,
      partition: r.kafka_partition,
      offset: r.kafka_offset,
      payload: r.payload,
      rawValue: r.raw_value,
      status: r.status,
      ...(rawBytes ? { rawBytes: b64(r.raw_bytes) } : {}),
    }));
    const keyEqual = jCols.has('kafka_key_bytes')
      ? 'r.kafka_key_bytes IS NOT DISTINCT FROM o.kafka_key_bytes'
      : 'r.kafka_key IS NOT DISTINCT FROM o.kafka_key';
    const replays = await db.query(
      `SELECT r.id, r.topic, r.kafka_partition, r.kafka_offset::text AS kafka_offset,
              r.payload->>'_replay_id' AS replay_id, r.payload->>'_replayed_from_event_id' AS from_id,
              CASE WHEN o.id IS NULL THEN NULL ELSE (r.payload - ${LINEAGE}) = (o.payload - ${LINEAGE}) END AS content_equal,
              CASE WHEN o.id IS NULL THEN NULL ELSE ${keyEqual} END AS key_equal
         FROM event_journal r
         LEFT JOIN event_journal o ON r.payload->>'_replayed_from_event_id' ~ '^[0-9]{1,18}$'
                                  AND o.id = (r.payload->>'_replayed_from_event_id')::bigint
        WHERE r.replay_count > 0 AND r.id > $1`,
      [scope.afterJournalId],
    );
    const replayRows: ReplayRow[] = replays.rows.map((r) => ({
      id: Number(r.id),
      topic: r.topic,
      partition: r.kafka_partition,
      offset: r.kafka_offset,
      replayId: r.replay_id,
      fromEventId: r.from_id,
      contentEqual: r.content_equal,
      keyEqual: r.key_equal,
    }));
    return {
      produced: withCanonical,
      journal: journalRows,
      dlq: dlqRows,
      replays: replayRows,
      schema: { contentHash: jCols.has('content_hash'), keyBytes: !!keyBytes, rawBytes: !!rawBytes },
    };
  } finally {
    await db.end().catch(() => undefined);
  }
}

/** Committed offsets of the ingest group against the high watermarks, per partition. */
export async function partitionOffsets(admin: Admin, groupId: string, topics: readonly string[]) {
  const out: PartitionOffsets[] = [];
  const committed = await admin.fetchOffsets({ groupId, topics: [...topics] });
  for (const topic of topics) {
    const highs = await admin.fetchTopicOffsets(topic);
    const group = committed.find((c) => c.topic === topic)?.partitions ?? [];
    for (const h of highs) {
      const c = group.find((g) => g.partition === h.partition);
      out.push({ topic, partition: h.partition, committed: c?.offset ?? '-1', high: h.high });
    }
  }
  return out;
}

/**
 * Rows written by ingest: every DLQ row, and the journal rows except those a DLQ retry inserted (the row a resolved
 * dead letter points to, received after the dead letter). Also how many of them were received (transaction start)
 * inside any of the windows [from, to] (epoch ms).
 */
export async function ingestRowCounts(databaseUrl: string, windows: Array<[number, number]>): Promise<IngestRows> {
  const db = new pg.Client({ connectionString: databaseUrl, statement_timeout: 120_000 });
  await db.connect();
  try {
    const { rows } = await db.query<Record<keyof IngestRows, string>>(
      `WITH w AS (SELECT to_timestamp(f / 1000.0) AS f, to_timestamp(t / 1000.0) AS t FROM unnest($1::float8[], $2::float8[]) AS u(f, t)),
            j AS (SELECT j.received_at FROM event_journal j
                   WHERE NOT EXISTS (SELECT 1 FROM event_dlq d WHERE d.status = 'resolved' AND d.resolved_event_id = j.id
                                                               AND j.received_at > d.received_at))
       SELECT (SELECT count(*) FROM j) AS journal,
              (SELECT count(*) FROM event_dlq) AS dlq,
              (SELECT count(*) FROM j WHERE EXISTS (SELECT 1 FROM w WHERE j.received_at BETWEEN w.f AND w.t)) AS "blindJournal",
              (SELECT count(*) FROM event_dlq d WHERE EXISTS (SELECT 1 FROM w WHERE d.received_at BETWEEN w.f AND w.t)) AS "blindDlq"`,
      [windows.map((w) => w[0]), windows.map((w) => w[1])],
    );
    const r = rows[0];
    return {
      journal: Number(r.journal),
      dlq: Number(r.dlq),
      blindJournal: Number(r.blindJournal),
      blindDlq: Number(r.blindDlq),
    };
  } finally {
    await db.end().catch(() => undefined);
  }
}
