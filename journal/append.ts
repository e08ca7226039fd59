import { isOutage, rolledBack, withTransaction, type Pool, type PoolClient } from '../shared/db';
import { insertDlqEntries, type InsertedDlqRow, type NewDlqEntry } from '../repository/event-dlq';
import {
  copyJournalEntries,
  insertJournalEntries,
  journalIdOf,
  notifyJournaled,
  type InsertedJournalRow,
  type NewJournalEntry,
} from '../repository/event-journal';
import { BATCH_IDLE_TIMEOUT_MS, classifyAgainstStore, type Classified, type Reuse } from './redelivery';
import { JournalUnavailableError } from './errors';
import type { RecordOutcome } from './kinds';
import { classified } from './error-class';
import { safeDlqEntry } from './outage';
import type { Accepted, ParsedRecord } from './record';

export interface JournaledEvent {
  row: InsertedJournalRow;
  record: Accepted;
}

export interface DeadLetter {
  entry: NewDlqEntry;
  reason: string;
}

/** What became of a consumed batch: every record has exactly one outcome (invariant 1). */
export interface AppendOutcome {
  /** One per input record, in input order. */
  outcomes: RecordOutcome[];
  journaled: JournaledEvent[];
  deadLetters: DeadLetter[];
  /** Records already stored at their coordinates with the same content: not written again. */
  redelivered: number;
  /** Records written although their coordinates already held a different record (topic re-created). */
  reused: Reuse[];
}

type JournalWriter = (client: PoolClient, entries: NewJournalEntry[]) => Promise<InsertedJournalRow[]>;

/**
 * The single way consumed records enter the journal, in one transaction: first, under the batch's advisory locks, it
 * reads what is already stored and sets aside proven redeliveries (redelivery.ts); then good records go into
 * event_journal, rejected ones into event_dlq. The journal write is a COPY (fast); when COPY fails, the transaction
 * is retried with INSERT; when that fails because of a row, row by row behind savepoints so that only the refused
 * rows go to the DLQ, with the database error. A dead letter Postgres refuses as written is stored in a form it
 * cannot refuse (bytes and sanitised text). Only an outage (JournalUnavailableError) leaves the batch unwritten.
 */
export async function appendBatch(pool: Pool, records: ParsedRecord[]): Promise<AppendOutcome> {
  const writers: JournalWriter[] = [copyJournalEntries, insertJournalEntries];
  for (const write of writers) {
    try {
      return await withTransaction(
        pool,
        async (client) => {
          const { classified, accepted, rejected } = await classify(client, records);
          const rows = await write(
            client,
            accepted.map((r) => r.entry),
          );
          return outcome(records, classified, await store(client, rows, rejected));
        },
        BATCH_IDLE_TIMEOUT_MS,
      );
    } catch (err) {
      if (err instanceof JournalUnavailableError) throw err;
      if (isOutage(err)) throw unavailable(err);
    }
  }
  return writeRowByRow(pool, records);
}

/** The batch as the store sees it under its locks: redeliveries set aside, the rest to journal or dead-letter. */
async function classify(client: PoolClient, records: ParsedRecord[]) {
  let classified: Classified;
  try {
    classified = await classifyAgainstStore(client, records);
  } catch (err) {
    throw unavailable(err);
  }
  const fresh = records.filter((_, i) => !classified.redelivered.has(i));
  const accepted = fresh.filter((r): r is Accepted => r.ok);
  const rejected: DeadLetter[] = fresh.flatMap((r) => (r.ok ? [] : [{ entry: r.dlq, reason: r.reason }]));
  return { classified, accepted, rejected };
}

/** What one transaction stored: journal rows and the dead letters as written (some in their safe form). */
interface Written {
  rows: InsertedJournalRow[];
  deadLetters: DeadLetter[];
}

async function writeRowByRow(pool: Pool, records: ParsedRecord[]): Promise<AppendOutcome> {
  try {
    return await withTransaction(
      pool,
      async (client) => {
        const { classified, accepted, rejected } = await classify(client, records);
        const rows: InsertedJournalRow[] = [];
        const refused: DeadLetter[] = [];
        for (const record of accepted) {
          const result = await behindSavepoint(client, 'journal_row', () =>
            insertJournalEntries(client, [record.entry]),
          );
          if (result instanceof Error) refused.push(refusedByJournal(record, result));
          else rows.push(...result);
        }
        return outcome(records, classified, await store(client, rows, [...rejected, ...refused]));
      },
      BATCH_IDLE_TIMEOUT_MS,
    );
  } catch (err) {
    if (err instanceof JournalUnavailableError) throw err;
    // Every row-level refusal is absorbed above: what is left is Postgres itself.
    throw unavailable(err);
  }
}

/** A record the journal refused (a CHECK, jsonb refusing a value) as a db_error dead letter with the SQLSTATE. */
function refusedByJournal(record: Accepted, err: Error & { code?: string }): DeadLetter {
  const { entry } = record;
  // Keep the payload as JSON unless jsonb itself refused it (SQLSTATE class 22): then only text can hold it.
  const jsonbRefused = err.code?.startsWith('22') ?? false;
  return {
    reason: 'db_error',
    entry: {
      ...entry,
      payloadJson: jsonbRefused ? null : entry.payloadJson,
      rawValue: jsonbRefused ? entry.payloadJson : null,
      rawBytes: record.valueBytes,
      error: insertFailure(err),
      reason: 'db_error',
    },
  };
}

function insertFailure(err: Error & { code?: string }): string {
  return `Insert into event_journal failed: ${err.message}${err.code ? ` (SQLSTATE ${err.code})` : ''}`;
}

/** What journaling one entry did: the journal row that now holds it, or why the journal refused it. */
export type AppendOneResult = { journalId: number } | { error: string };

/**
 * Journals one entry inside the caller's transaction, behind a savepoint: a dead letter retried or repaired
 * (journal/dead-letter.ts, journal/repair.ts). A row the journal refuses is the entry's error; an outage is thrown.
 * A second journaling of one dead letter is not kept out here: the partitioned journal has no unique index spanning
 * its partitions, so ON CONFLICT only catches a record already in the same partition (then that row's id is the
 * result). The callers keep it out: they hold the dead letter's row lock (getDlqEntry FOR UPDATE) from its read to
 * their commit and mark it resolved with the journal row's id in the same transaction, so a later retry or repair of
 * it finds it resolved; ingest sets a redelivery of a dead-lettered record aside (journal/redelivery.ts).
 */
export async function appendOne(client: PoolClient, entry: NewJournalEntry): Promise<AppendOneResult> {
  const inserted = await behindSavepoint(client, 'journal_one', () => insertJournalEntries(client, [entry]));
  if (inserted instanceof Error) return { error: insertFailure(inserted) };
  const [row] = inserted;
  const journalId = row?.id ?? (await journalIdOf(client, entry));
  if (journalId === undefined) return { error: 'Journal refused the entry as already journaled, but no row holds it' };
  if (row) await notifyJournaled(client, row.id);
  return { journalId };
}

/**
 * Runs fn, which journals with appendOne, in a transaction of its own that Postgres ends once it sits idle
 * BATCH_IDLE_TIMEOUT_MS, as it ends an ingest batch's: from its first journal write to its end it holds the journal's
 * append lock (repository/event-journal.ts), which a range replay's pin waits for, so a process frozen in it (SIGSTOP,
 * a paused VM) would otherwise keep every range replay from being pinned, each try holding up ingest, for as long as
 * it stays frozen (attack61). The DLQ retry and repair, one dead letter per transaction.
 */
export function withJournaling<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return withTransaction(pool, fn, BATCH_IDLE_TIMEOUT_MS);
}

/** withJournaling's trial form: fn's result, its transaction rolled back (a repair's preview). */
export function trialJournaling<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return rolledBack(pool, fn, BATCH_IDLE_TIMEOUT_MS);
}

/**
 * Runs a statement behind a savepoint: its result, or the error a row caused (rolled back to the savepoint). An
 * outage is thrown.
 */
async function behindSavepoint<T>(client: PoolClient, name: string, fn: () => Promise<T>): Promise<T | Error> {
  await client.query(`SAVEPOINT ${name}`);
  try {
    const result = await fn();
    await client.query(`RELEASE SAVEPOINT ${name}`);
    return result;
  } catch (err) {
    if (isOutage(err)) throw err;
    await client.query(`ROLLBACK TO SAVEPOINT ${name}`);
    return err instanceof Error ? err : new Error(String(err));
  }
}

/**
 * The DLQ write that no row can fail: all at once; if Postgres refuses, one by one; an entry refused on its own goes
 * in its safe form (value, key and headers as bytes, sanitised text, no jsonb). Returns the dead letters written
 * (an entry already dead-lettered, same record, is not).
 */
async function insertDeadLetters(client: PoolClient, deadLetters: DeadLetter[]): Promise<DeadLetter[]> {
  if (deadLetters.length === 0) return [];
  // Classified as written first: the safe form keeps the class of the error that sent the record here.
  const entries = deadLetters.map((d) => classified(d.entry));
  const all = await behindSavepoint(client, 'dlq_batch', () => insertDlqEntries(client, entries));
  if (!(all instanceof Error)) return writtenOnes(deadLetters, all);
  const written: DeadLetter[] = [];
  for (const [i, dead] of deadLetters.entries()) {
    const one = await behindSavepoint(client, 'dlq_row', () => insertDlqEntries(client, [entries[i]]));
    if (!(one instanceof Error)) {
      written.push(...writtenOnes([dead], one));
      continue;
    }
    const safeEntry = safeDlqEntry(entries[i], one);
    const safe = { ...dead, entry: safeEntry };
    written.push(...writtenOnes([safe], await insertDlqEntries(client, [safeEntry])));
  }
  return written;
}

function writtenOnes(deadLetters: DeadLetter[], rows: InsertedDlqRow[]): DeadLetter[] {
  const inserted = new Set(rows.map((r) => recordKey(r.offset, r.content_hash)));
  return deadLetters.filter((d) => inserted.has(recordKey(d.entry.offset, d.entry.contentHash)));
}

/** Writes the dead letters next to the journal rows, and announces the rows to live-stream listeners at commit. */
async function store(client: PoolClient, rows: InsertedJournalRow[], deadLetters: DeadLetter[]): Promise<Written> {
  const written = await insertDeadLetters(client, deadLetters);
  if (rows.length)
    await notifyJournaled(
      client,
      rows.reduce((max, r) => Math.max(max, r.id), 0),
    );
  return { rows, deadLetters: written };
}

/** Identifies a record within one partition's batch. */
function recordKey(offset: string | number | null, hash: Buffer | null): string {
  return `${offset}/${hash?.toString('hex') ?? '-'}`;
}

function outcome(records: ParsedRecord[], classified: Classified, written: Written): AppendOutcome {
  const { redelivered, reused } = classified;
  // Rows come back in entry order, most often one per accepted record: pair them by position, and fall back to a
  // lookup by coordinates and hash only past the first mismatch (a row skipped by a unique index or refused).
  let next = 0;
  let rowsByKey: Map<string, InsertedJournalRow> | undefined;
  const rowOf = (entry: NewJournalEntry): InsertedJournalRow | undefined => {
    const candidate = written.rows[next];
    if (
      candidate &&
      String(candidate.kafka_offset) === entry.offset &&
      candidate.topic === entry.topic &&
      candidate.kafka_partition === entry.partition &&
      (candidate.content_hash?.equals(entry.contentHash ?? Buffer.alloc(0)) ?? entry.contentHash === null)
    ) {
      next += 1;
      return candidate;
    }
    rowsByKey ??= new Map(
      written.rows.map((row) => [keyOf(row.topic, row.kafka_partition, row.kafka_offset, row.content_hash), row]),
    );
    return rowsByKey.get(keyOf(entry.topic, entry.partition, entry.offset, entry.contentHash));
  };
  const deadKeys = new Set(
    written.deadLetters.map(({ entry }) => keyOf(entry.topic, entry.partition, entry.offset, entry.contentHash)),
  );
  const journaled: JournaledEvent[] = [];
  const outcomes = records.map((record, i): RecordOutcome => {
    if (redelivered.has(i)) return 'redelivered';
    const row = record.ok ? rowOf(record.entry) : undefined;
    if (row && record.ok) {
      journaled.push({ row, record });
      return 'journaled';
    }
    const stored = record.ok ? record.entry : record.dlq;
    if (deadKeys.has(keyOf(stored.topic, stored.partition, stored.offset, stored.contentHash))) return 'dead_lettered';
    // Refused by a unique index in the write itself: a concurrent consumer stored this very record, or it is a
    // republished page of a replay already journaled.
    return 'redelivered';
  });
  return {
    outcomes,
    journaled,
    deadLetters: written.deadLetters,
    redelivered: outcomes.filter((o) => o === 'redelivered').length,
    reused: reused.filter((r) => outcomes[r.index] !== 'redelivered'),
  };
}

function keyOf(topic: string, partition: number | null, offset: string | number | null, hash: Buffer | null): string {
  return `${topic}/${partition}/${recordKey(offset, hash)}`;
}

function unavailable(err: unknown): JournalUnavailableError {
  const message = err instanceof Error ? err.message : String(err);
  return new JournalUnavailableError(`Postgres unavailable: ${message}`, { cause: err });
}
