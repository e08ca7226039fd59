import { isTransientDbError, withTransaction, type Pool, type PoolClient } from '../shared/db';
import { insertDlqEntries, type NewDlqEntry } from '../repository/event-dlq';
import {
  copyJournalEntries,
  insertJournalEntries,
  notifyJournaled,
  type InsertedJournalRow,
  type NewJournalEntry,
} from '../repository/event-journal';
import { JournalUnavailableError } from './errors';
import type { Accepted, ParsedRecord } from './parse';

export interface JournaledEvent {
  row: InsertedJournalRow;
  record: Accepted;
}

export interface DeadLetter {
  entry: NewDlqEntry;
  reason: string;
}

export interface BatchOutcome {
  journaled: JournaledEvent[];
  /** Records already in the journal (a redelivery after a crash or rebalance). */
  duplicates: number;
  deadLetters: DeadLetter[];
}

type JournalWriter = (client: PoolClient, entries: NewJournalEntry[]) => Promise<InsertedJournalRow[]>;

/**
 * Journals one consumed batch in one transaction: good records into event_journal, rejected ones into event_dlq.
 * The batch goes in with COPY first (the fast path). COPY cannot skip a record that is already journaled (a
 * redelivery after a crash or rebalance) nor leave out one bad row, so when it fails the batch is written again in a
 * new transaction with one INSERT … ON CONFLICT DO NOTHING; when that fails because of one row (a CHECK constraint, a
 * value jsonb refuses), row by row behind savepoints so that only the failing rows go to the DLQ, with the database
 * error. Transient failures (Postgres unreachable) throw JournalUnavailableError and write nothing.
 */
export async function persistBatch(pool: Pool, records: ParsedRecord[]): Promise<BatchOutcome> {
  const accepted = records.filter((r): r is Accepted => r.ok);
  const deadLetters: DeadLetter[] = records.flatMap((r) => (r.ok ? [] : [{ entry: r.dlq, reason: r.reason }]));
  const writers: JournalWriter[] = [copyJournalEntries, insertJournalEntries];
  for (const write of writers) {
    try {
      return await withTransaction(pool, async (client) => {
        const rows = await write(
          client,
          accepted.map((r) => r.entry),
        );
        return finish(client, accepted, rows, deadLetters);
      });
    } catch (err) {
      if (isTransientDbError(err)) throw unavailable(err);
    }
  }
  return persistRowByRow(pool, accepted, deadLetters);
}

async function persistRowByRow(pool: Pool, accepted: Accepted[], deadLetters: DeadLetter[]): Promise<BatchOutcome> {
  try {
    return await withTransaction(pool, async (client) => {
      const rows: InsertedJournalRow[] = [];
      const failed: DeadLetter[] = [];
      for (const record of accepted) {
        const row = await insertOne(client, record, failed);
        if (row) rows.push(row);
      }
      return finish(client, accepted, rows, [...deadLetters, ...failed]);
    });
  } catch (err) {
    // Even the DLQ write failed: nowhere safe to put the batch, so it stays uncommitted in Kafka.
    throw unavailable(err);
  }
}

async function insertOne(
  client: PoolClient,
  record: Accepted,
  failed: DeadLetter[],
): Promise<InsertedJournalRow | undefined> {
  await client.query('SAVEPOINT journal_row');
  try {
    const [row] = await insertJournalEntries(client, [record.entry]);
    await client.query('RELEASE SAVEPOINT journal_row');
    return row;
  } catch (err) {
    if (isTransientDbError(err)) throw err;
    await client.query('ROLLBACK TO SAVEPOINT journal_row');
    const { message, code } = err as { message: string; code?: string };
    const { entry } = record;
    // Keep the payload as JSON unless jsonb itself refused it (SQLSTATE class 22): then only text can hold it.
    const jsonbRefused = code?.startsWith('22') ?? false;
    failed.push({
      reason: 'db_error',
      entry: {
        topic: entry.topic,
        tenantId: entry.tenantId,
        payloadJson: jsonbRefused ? null : entry.payloadJson,
        rawValue: jsonbRefused ? entry.payloadJson : null,
        error: `Insert into event_journal failed: ${message}${code ? ` (SQLSTATE ${code})` : ''}`,
        reason: 'db_error',
        partition: entry.partition,
        offset: entry.offset,
        key: entry.key,
      },
    });
    return undefined;
  }
}

/** Writes the batch's dead letters next to its journal rows, announces the rows at commit, and sums it up. */
async function finish(
  client: PoolClient,
  accepted: Accepted[],
  rows: InsertedJournalRow[],
  deadLetters: DeadLetter[],
): Promise<BatchOutcome> {
  await insertDlqEntries(
    client,
    deadLetters.map((d) => d.entry),
  );
  await announce(client, rows);
  return outcome(accepted, rows, deadLetters);
}

function outcome(accepted: Accepted[], rows: InsertedJournalRow[], deadLetters: DeadLetter[]): BatchOutcome {
  if (rows.length === accepted.length && rows.every((row, i) => sameCoordinates(row, accepted[i].entry))) {
    return { journaled: rows.map((row, i) => ({ row, record: accepted[i] })), duplicates: 0, deadLetters };
  }
  const byCoordinates = new Map(rows.map((row) => [`${row.topic}/${row.kafka_partition}/${row.kafka_offset}`, row]));
  const journaled: JournaledEvent[] = [];
  for (const record of accepted) {
    const { topic, partition, offset } = record.entry;
    const row = byCoordinates.get(`${topic}/${partition}/${offset}`);
    if (row) journaled.push({ row, record });
  }
  const failedCount = deadLetters.filter((d) => d.reason === 'db_error').length;
  return { journaled, duplicates: accepted.length - journaled.length - failedCount, deadLetters };
}

/** Whether a returned row is this entry's (the common case: every entry journaled, rows in entry order). */
function sameCoordinates(row: InsertedJournalRow, entry: NewJournalEntry): boolean {
  return (
    row.topic === entry.topic && row.kafka_partition === entry.partition && String(row.kafka_offset) === entry.offset
  );
}

/** Tells live-stream listeners about the new rows, at commit. */
async function announce(client: PoolClient, rows: InsertedJournalRow[]): Promise<void> {
  if (rows.length)
    await notifyJournaled(
      client,
      rows.reduce((max, r) => Math.max(max, r.id), 0),
    );
}

function unavailable(err: unknown): JournalUnavailableError {
  const message = err instanceof Error ? err.message : String(err);
  return new JournalUnavailableError(`Postgres unavailable: ${message}`, { cause: err });
}
