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
 * Invariant 1: every acknowledged record is in exactly one place at its coordinates with its content. After a topic
 * is re-created, one coordinate legitimately holds several records; each needs its own row.
 */
export function checkRecords(produced: Produced[], journal: JournalRow[], dlq: DlqRow[]): RecordVerdict {
  const v: RecordVerdict = {
    produced: produced.length,
    journaled: 0,
    deadLettered: 0,
    resolvedFromDlq: 0,
    lost: 0,
    altered: 0,
    duplicated: 0,
    unaccountedRows: 0,
    originalIds: new Set(),
    violations: [],
  };
  const journalAt = groupBy(journal, (r) => coordKey(r.topic, r.partition, r.offset));
  const dlqAt = groupBy(dlq, (r) => coordKey(r.topic, r.partition, r.offset));
  const producedAt = groupBy(produced, (p) => coordKey(p.topic, p.partition, p.offset));

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
    // A record with no row of its content: altered if some row at its coordinates holds content nobody produced.
    const strangers = [...rows, ...dead].filter((r) => !claimed.has(r));
    for (const p of unmatched) {
      const rule = strangers.length > 0 ? 'altered' : 'lost';
      if (rule === 'altered') v.altered++;
      else v.lost++;
      const ids = strangers.map((r) => ('rawValue' in r ? `dlq ${r.id}` : `journal ${r.id}`));
      v.violations.push({
        rule,
        detail: `${p.kind} at ${coords}: ${rule === 'lost' ? 'no journal or DLQ row' : `rows there (${ids}) hold other content`}`,
      });
    }
  }
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
