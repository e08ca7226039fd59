/**
 * The soak's verdict, as pure functions over what was produced and what the database holds (collected by collect.ts),
 * so the rules can be unit-tested on fabricated rows. Bytes travel as base64 strings (null = absent).
 */

/** A record the producer got an acknowledgement for: its coordinates and exact bytes. */
export interface Produced {
  topic: string;
  partition: number;
  offset: string;
  kind: string;
  key: string | null;
  value: string | null;
  /** The value as Postgres prints it once stored as jsonb (null: not valid JSON for jsonb). */
  canonical: string | null;
  /** When the producer got the acknowledgement (epoch ms); needed to place a record before or after a topic delete. */
  ackedAt?: number;
}

/**
 * A topic delete + re-create the soak made, with the ingest group's committed offsets and the high watermarks read
 * just before the delete. Records acknowledged on the deleted log but not yet consumed are gone with it.
 */
export interface TopicDeletion {
  topic: string;
  /** When the offsets below were read (epoch ms), then when the delete and the re-creation were requested. */
  snapshotAt: number;
  deleteRequestedAt: number;
  createRequestedAt: number;
  partitions: Array<{ partition: number; committed: string; high: string }>;
}

export interface JournalRow {
  id: number;
  topic: string;
  partition: number | null;
  offset: string | null;
  payload: string;
  /** kafka_key_bytes when the schema has it (base64), else undefined. */
  keyBytes?: string | null;
  replayCount: number;
}

export interface DlqRow {
  id: number;
  topic: string;
  partition: number | null;
  offset: string | null;
  payload: string | null;
  rawValue: string | null;
  /** raw_bytes when the schema has it (base64), else undefined. */
  rawBytes?: string | null;
  status: string;
}

export interface Violation {
  rule: string;
  detail: string;
}

export interface RecordVerdict {
  produced: number;
  journaled: number;
  deadLettered: number;
  /** Dead letters that a retry resolved into a journal row (counted once, as journaled). */
  resolvedFromDlq: number;
  lost: number;
  altered: number;
  duplicated: number;
  /**
   * Acknowledged on a log the soak deleted, at or after the group's committed offset at the delete, and never consumed:
   * gone with the topic, not lost (listed in deletedWithTopicDetail; never counted silently).
   */
  deletedWithTopic: number;
  deletedWithTopicDetail: Array<{
    topic: string;
    partition: number;
    committed: string;
    high: string;
    offsets: string[];
  }>;
  /** Rows at coordinates nothing acknowledged (e.g. a send that failed after the broker wrote it); not violations. */
  unaccountedRows: number;
  /** Journal rows that hold a produced record (originals, even when they carry forged lineage). */
  originalIds: Set<number>;
  violations: Violation[];
}

const coordKey = (topic: string, partition: number | null, offset: string | null) => `${topic}/${partition}/${offset}`;

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const map = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = map.get(k);
    if (list) list.push(item);
    else map.set(k, [item]);
  }
  return map;
}

/** Whether a DLQ row holds exactly this produced value: raw bytes when stored, else the forms the service writes. */
export function dlqHolds(row: DlqRow, p: Produced): boolean {
  if (row.rawBytes !== undefined) return row.rawBytes === p.value;
  if (p.value === null) return row.payload === null && row.rawValue === null;
  if (row.payload !== null && p.canonical !== null) return row.payload === p.canonical;
  if (row.rawValue === null) return false;
  const raw = Buffer.from(p.value, 'base64');
  return row.rawValue === `base64:${p.value}` || row.rawValue === raw.toString('utf8');
}

/** Whether a journal row holds exactly this produced record (payload as jsonb, and key bytes when stored). */
export function journalHolds(row: JournalRow, p: Produced): boolean {
  if (p.canonical === null || row.payload !== p.canonical) return false;
  return row.keyBytes === undefined || row.keyBytes === p.key;
}

/**
 * The topic delete whose deleted log held this record: the first delete of its topic re-created after the record was
 * acknowledged. Until the re-creation is requested the topic does not exist (auto-creation is off), so a record
 * acknowledged before it was written to the deleted log; one acknowledged later belongs to a later log.
 */
function deletionOf(p: Produced, deletions: TopicDeletion[]): number {
  if (p.ackedAt === undefined) return -1;
  let found = -1;
  deletions.forEach((d, i) => {
    if (d.topic !== p.topic || p.ackedAt! >= d.createRequestedAt) return;
    if (found < 0 || d.createRequestedAt < deletions[found].createRequestedAt) found = i;
  });
  return found;
}

/**
 * Invariant 1: every acknowledged record is in exactly one place at its coordinates with its content. After a topic
 * is re-created, one coordinate legitimately holds several records; each needs its own row.
 *
 * A record with no row is lost, unless a topic delete explains it (`deleted_with_topic`): it was acknowledged on the
 * log that was deleted, its offset is at or after the group's committed offset read just before the delete, it is
 * not past the high watermark read then unless acknowledged after that read, and no later record of the same log and
 * partition has a row (the consumer works a partition in order: a row past it means it was consumed, and then it is
 * lost). Anything else is lost.
 */
export function checkRecords(
  produced: Produced[],
  journal: JournalRow[],
  dlq: DlqRow[],
  deletions: TopicDeletion[] = [],
): RecordVerdict {
  const v: RecordVerdict = {
    produced: produced.length,
    journaled: 0,
    deadLettered: 0,
    resolvedFromDlq: 0,
    lost: 0,
    altered: 0,
    duplicated: 0,
    deletedWithTopic: 0,
    deletedWithTopicDetail: [],
    unaccountedRows: 0,
    originalIds: new Set(),
    violations: [],
  };
  const journalAt = groupBy(journal, (r) => coordKey(r.topic, r.partition, r.offset));
  const dlqAt = groupBy(dlq, (r) => coordKey(r.topic, r.partition, r.offset));
  const producedAt = groupBy(produced, (p) => coordKey(p.topic, p.partition, p.offset));
  // Per deleted log and partition: the highest offset of a record that has a row.
  const consumedUpTo = new Map<string, bigint>();
  const missing: Array<{ p: Produced; coords: string; strangers: Array<JournalRow | DlqRow> }> = [];

  for (const [coords, records] of producedAt) {
    const rows = journalAt.get(coords) ?? [];
    const dead = dlqAt.get(coords) ?? [];
    const claimed = new Set<object>();
    const unmatched: Produced[] = [];
    for (const p of records) {
      const j = rows.filter((r) => !claimed.has(r) && journalHolds(r, p));
      const d = dead.filter((r) => !claimed.has(r) && dlqHolds(r, p));
      const open = d.filter((r) => r.status !== 'resolved');
      const resolved = d.filter((r) => r.status === 'resolved');
      if (j.length === 0 && d.length === 0) {
        unmatched.push(p);
        continue;
      }
      const gen = deletionOf(p, deletions);
      if (gen >= 0) {
        const k = `${gen}/${p.partition}`;
        const offset = BigInt(p.offset);
        if ((consumedUpTo.get(k) ?? -1n) < offset) consumedUpTo.set(k, offset);
      }
      // One place: one journal row, or one open DLQ row; a resolved DLQ row goes with the journal row it produced.
      const places = j.length + open.length;
      if (places > 1 || (places === 0 && resolved.length > 1)) {
        v.duplicated++;
        v.violations.push({
          rule: 'duplicated',
          detail: `${p.kind} at ${coords}: journal rows [${j.map((r) => r.id)}], open DLQ rows [${open.map((r) => r.id)}]`,
        });
      }
      if (j.length > 0) {
        v.journaled++;
        if (resolved.length > 0) v.resolvedFromDlq++;
      } else v.deadLettered++;
      for (const r of [...j, ...d]) claimed.add(r);
      for (const r of j) v.originalIds.add(r.id);
    }
    // Rows at these coordinates that no produced record claimed (computed once all records here had their turn).
    const strangers = [...rows, ...dead].filter((r) => !claimed.has(r));
    for (const p of unmatched) missing.push({ p, coords, strangers });
  }

  const gone = new Map<string, RecordVerdict['deletedWithTopicDetail'][number]>();
  for (const { p, coords, strangers } of missing) {
    // A record with no row of its content: altered if some row at its coordinates holds content nobody produced.
    if (strangers.length > 0) {
      v.altered++;
      const ids = strangers.map((r) => ('rawValue' in r ? `dlq ${r.id}` : `journal ${r.id}`));
      v.violations.push({ rule: 'altered', detail: `${p.kind} at ${coords}: rows there (${ids}) hold other content` });
      continue;
    }
    const gen = deletionOf(p, deletions);
    const d = gen >= 0 ? deletions[gen] : undefined;
    const at = d?.partitions.find((x) => x.partition === p.partition);
    const offset = BigInt(p.offset);
    const why = !d
      ? undefined
      : !at
        ? `no offsets were read for partition ${p.partition} before the delete`
        : offset < BigInt(at.committed)
          ? `offset below the committed offset ${at.committed} at the delete (it was consumed)`
          : offset >= BigInt(at.high) && p.ackedAt! < d.snapshotAt
            ? `offset at or past the high watermark ${at.high} read after its acknowledgement`
            : (consumedUpTo.get(`${gen}/${p.partition}`) ?? -1n) > offset
              ? `a later record of the deleted log (offset ${consumedUpTo.get(`${gen}/${p.partition}`)}) has a row`
              : null;
    if (d && at && why === null) {
      v.deletedWithTopic++;
      const k = `${gen}/${p.partition}`;
      const entry = gone.get(k) ?? {
        topic: p.topic,
        partition: p.partition,
        committed: at.committed,
        high: at.high,
        offsets: [],
      };
      entry.offsets.push(p.offset);
      gone.set(k, entry);
      continue;
    }
    v.lost++;
    v.violations.push({
      rule: 'lost',
      detail: `${p.kind} at ${coords}: no journal or DLQ row${why ? ` (acknowledged before a delete of the topic, but ${why})` : ''}`,
    });
  }
  v.deletedWithTopicDetail = [...gone.values()].map((e) => ({
    ...e,
    offsets: e.offsets.sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1)),
  }));
  for (const [coords, rows] of journalAt) {
    if (!producedAt.has(coords)) v.unaccountedRows += rows.filter((r) => r.replayCount === 0).length;
  }
  for (const [coords, rows] of dlqAt) if (!producedAt.has(coords)) v.unaccountedRows += rows.length;
  return v;
}

/** A journal row that claims to be a replay, with what collect.ts compared against its original in SQL. */
export interface ReplayRow {
  id: number;
  topic: string;
  partition: number | null;
  offset: string | null;
  replayId: string | null;
  fromEventId: string | null;
  /** payload minus lineage fields equal (jsonb) to the original's minus lineage; null: original not found. */
  contentEqual: boolean | null;
  keyEqual: boolean | null;
}

/** A replay the soak started and saw complete, with what it must have journaled. */
export interface CompletedReplay {
  workflowId: string;
  /** Event ids it replayed (single, batch); undefined when only a count is known (range). */
  eventIds?: number[];
  published?: number;
}

export interface ReplayVerdict {
  replayRows: number;
  forgedRows: number;
  duplicated: number;
  altered: number;
  incomplete: number;
  violations: Violation[];
}

/**
 * Invariant 6 and "once per replayed event". Rows holding a produced record (originalIds, from checkRecords) are our
 * forged-lineage originals, not replays; coordinates alone cannot tell, since a re-created topic reuses them.
 */
export function checkReplays(rows: ReplayRow[], originalIds: Set<number>, completed: CompletedReplay[]): ReplayVerdict {
  const replays = rows.filter((r) => !originalIds.has(r.id));
  const v: ReplayVerdict = {
    replayRows: replays.length,
    forgedRows: rows.length - replays.length,
    duplicated: 0,
    altered: 0,
    incomplete: 0,
    violations: [],
  };
  for (const [pair, same] of groupBy(replays, (r) => `${r.replayId}/${r.fromEventId}`)) {
    if (same.length > 1) {
      v.duplicated += same.length - 1;
      v.violations.push({
        rule: 'replay_duplicated',
        detail: `${pair} journaled ${same.length} times (ids ${same.map((r) => r.id)})`,
      });
    }
  }
  for (const r of replays) {
    if (r.contentEqual === false || r.keyEqual === false) {
      v.altered++;
      const what = [r.contentEqual === false ? 'payload' : '', r.keyEqual === false ? 'key' : ''].filter(Boolean);
      v.violations.push({
        rule: 'replay_altered',
        detail: `row ${r.id} (replay of ${r.fromEventId} by ${r.replayId}): ${what.join(' and ')} differ from the original`,
      });
    }
  }
  const byReplay = groupBy(replays, (r) => r.replayId ?? '');
  for (const c of completed) {
    const got = byReplay.get(c.workflowId) ?? [];
    const missing = c.eventIds ? c.eventIds.filter((id) => !got.some((r) => r.fromEventId === String(id))) : [];
    const short = c.eventIds === undefined && c.published !== undefined && got.length < c.published;
    if (missing.length > 0 || short) {
      v.incomplete++;
      v.violations.push({
        rule: 'replay_incomplete',
        detail: `${c.workflowId} completed but ${short ? `${got.length} of ${c.published} published events` : `events ${missing.join(',')}`} are not journaled`,
      });
    }
  }
  return v;
}

export interface PartitionOffsets {
  topic: string;
  partition: number;
  committed: string;
  high: string;
}

/** Partitions whose consumer group has not caught up with the log after the drain. */
export function stuckPartitions(offsets: PartitionOffsets[]): Violation[] {
  return offsets
    .filter((o) => BigInt(o.high) > 0n && (o.committed === '-1' || BigInt(o.committed) < BigInt(o.high)))
    .map((o) => ({
      rule: 'stuck_partition',
      detail: `${o.topic}/${o.partition}: committed ${o.committed}, high watermark ${o.high}`,
    }));
}

/** Invariant 3 from one scrape: per partition, consumed = journaled + dead_lettered + redelivered. */
export function checkAccounting(metricsText: string): { present: boolean; violations: Violation[] } {
  const consumed = new Map<string, number>();
  const outcomes = new Map<string, number>();
  const line = /^(crm_events_consumed_total|crm_events_record_outcomes_total)\{([^}]*)\}\s+(\S+)/;
  for (const text of metricsText.split('\n')) {
    const m = line.exec(text);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    const k = `${labels.topic}/${labels.partition}`;
    const target = m[1] === 'crm_events_consumed_total' ? consumed : outcomes;
    target.set(k, (target.get(k) ?? 0) + Number(m[3]));
  }
  const violations: Violation[] = [];
  for (const k of new Set([...consumed.keys(), ...outcomes.keys()])) {
    if ((consumed.get(k) ?? 0) !== (outcomes.get(k) ?? 0)) {
      violations.push({
        rule: 'accounting',
        detail: `${k}: consumed ${consumed.get(k) ?? 0}, outcomes ${outcomes.get(k) ?? 0}`,
      });
    }
  }
  return { present: consumed.size > 0, violations };
}

/** crm_events_ingest_consumer_restarts_total by reason, from one scrape. */
export function consumerRestarts(metricsText: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of metricsText.matchAll(/^crm_events_ingest_consumer_restarts_total\{reason="([^"]*)"\}\s+(\S+)/gm))
    out[m[1]] = Number(m[2]);
  return out;
}

/** One ingest process's counters summed over topics and partitions. */
export interface CounterTotals {
  consumed: number;
  journaled: number;
  dead_lettered: number;
  redelivered: number;
}

/** crm_events_consumed_total and crm_events_record_outcomes_total summed; undefined if neither is exposed. */
export function counterTotals(metricsText: string): CounterTotals | undefined {
  const t: CounterTotals = { consumed: 0, journaled: 0, dead_lettered: 0, redelivered: 0 };
  let seen = false;
  const line = /^(crm_events_consumed_total|crm_events_record_outcomes_total)\{([^}]*)\}\s+(\S+)/;
  for (const text of metricsText.split('\n')) {
    const m = line.exec(text);
    if (!m) continue;
    seen = true;
    if (m[1] === 'crm_events_consumed_total') t.consumed += Number(m[3]);
    else {
      const outcome = /outcome="([^"]*)"/.exec(m[2])?.[1];
      if (outcome === 'journaled' || outcome === 'dead_lettered' || outcome === 'redelivered')
        t[outcome] += Number(m[3]);
    }
  }
  return seen ? t : undefined;
}

/** An ingest process as the soak saw it: its life and its last successful scrape. */
export interface IngestProcess {
  pid: number;
  startedAt: number;
  endedAt?: number;
  end?: string;
  scrapes: number;
  /** When the last successful scrape was sent (epoch ms); the counters are from then or a little later. */
  lastScrapeAt?: number;
  totals?: CounterTotals;
  /** crm_events_ingest_consumer_restarts_total by reason, at the last scrape (watchdog and crash restarts). */
  consumerRestarts?: Record<string, number>;
}

/** Rows written by ingest (journal rows a DLQ retry inserted excluded), and those inside the processes' blind windows. */
export interface IngestRows {
  journal: number;
  dlq: number;
  blindJournal: number;
  blindDlq: number;
}

/**
 * Invariant 3 across ingest processes (counters restart with each process). Each process's last scrape is a lower
 * bound of what it wrote: what it did after that scrape and before it died (its blind window) is in the database but
 * in no scrape. So, summed over processes: counted journaled <= journal rows written by ingest, counted dead-lettered
 * <= DLQ rows (more would be rows counted that do not exist), and the rows not counted must all lie in blind windows.
 */
export function checkIngestTotals(
  processes: IngestProcess[],
  rows: IngestRows,
): { sum: CounterTotals; uncounted: { journal: number; dlq: number }; violations: Violation[] } {
  const sum: CounterTotals = { consumed: 0, journaled: 0, dead_lettered: 0, redelivered: 0 };
  for (const p of processes) {
    if (!p.totals) continue;
    for (const k of Object.keys(sum) as Array<keyof CounterTotals>) sum[k] += p.totals[k];
  }
  const uncounted = { journal: rows.journal - sum.journaled, dlq: rows.dlq - sum.dead_lettered };
  const violations: Violation[] = [];
  const what = [
    ['journaled', 'journal', uncounted.journal, rows.blindJournal],
    ['dead_lettered', 'DLQ', uncounted.dlq, rows.blindDlq],
  ] as const;
  for (const [outcome, table, missing, blind] of what) {
    if (missing < 0) {
      violations.push({
        rule: 'metrics_exceed_rows',
        detail: `ingest processes counted ${-missing} more ${outcome} records than ingest wrote ${table} rows (${outcome} ${outcome === 'journaled' ? sum.journaled : sum.dead_lettered}, rows ${outcome === 'journaled' ? rows.journal : rows.dlq})`,
      });
    } else if (missing > blind) {
      violations.push({
        rule: 'rows_not_counted',
        detail: `${missing} ${table} rows written by ingest are in no process's ${outcome} count, but only ${blind} were written in the windows no scrape saw (a process's last scrape to its end)`,
      });
    }
  }
  return { sum, uncounted, violations };
}

/** What the faults that exercise replays around topic deletion observed (faults.ts). */
export interface ReplayFaultObservation {
  kind: string;
  replayAfterRecreate?: { request: string; status: number | 'error'; error?: string };
  midReplayDelete?: {
    workflowId?: string;
    targetTopic: string;
    workflowStatus?: string;
    auditStatus?: string;
    auditError?: string | null;
    failureType?: string;
    nonRetryable?: boolean;
    activityRetryState?: string;
    inconclusive?: string;
  };
}

/**
 * Invariant 8 while a replay runs: a range replay whose target topic is deleted mid-run fails with the non-retryable
 * UnknownTopic naming the topic, and its audit row says failed. And a replay asked for right after a topic was
 * re-created is accepted (200: done within the API's wait, 202: running; its journaling is checked with the others). Runs that could not be arranged are counted as inconclusive, never as passes.
 */
export function checkReplayFaults(faults: ReplayFaultObservation[]): {
  midReplayDeletes: number;
  inconclusive: number;
  replaysAfterRecreate: number;
  violations: Violation[];
} {
  const out = { midReplayDeletes: 0, inconclusive: 0, replaysAfterRecreate: 0, violations: [] as Violation[] };
  for (const f of faults) {
    const a = f.replayAfterRecreate;
    if (a) {
      out.replaysAfterRecreate++;
      if (typeof a.status !== 'number' || a.status < 200 || a.status >= 300)
        out.violations.push({
          rule: 'replay_after_recreate_refused',
          detail: `${a.request} right after the topic was re-created answered ${a.status}${a.error ? `: ${a.error}` : ''}`,
        });
    }
    const m = f.midReplayDelete;
    if (!m) continue;
    if (m.inconclusive) {
      out.inconclusive++;
      continue;
    }
    out.midReplayDeletes++;
    const wrong: string[] = [];
    if (m.workflowStatus !== 'FAILED') wrong.push(`workflow ${m.workflowStatus ?? 'status unknown'}, not FAILED`);
    else {
      if (m.failureType !== 'UnknownTopic') wrong.push(`failure type ${m.failureType ?? 'unknown'}, not UnknownTopic`);
      if (m.nonRetryable !== true && m.activityRetryState !== 'NON_RETRYABLE_FAILURE')
        wrong.push(`failure not non-retryable (retry state ${m.activityRetryState ?? 'unknown'})`);
    }
    if (m.auditStatus !== 'failed') wrong.push(`audit status ${m.auditStatus ?? 'missing'}, not failed`);
    if (!m.auditError?.includes(m.targetTopic)) wrong.push(`audit error does not name the topic: ${m.auditError}`);
    if (wrong.length > 0)
      out.violations.push({
        rule: 'replay_target_deleted',
        detail: `${m.workflowId} to ${m.targetTopic}, deleted mid-run: ${wrong.join('; ')}`,
      });
  }
  return out;
}
