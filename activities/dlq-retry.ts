import { parseRecord } from '../ingest/parse';
import { withTransaction } from '../shared/db';
import { dueDlqIds, getDlqEntry, markDlqFailed, markDlqResolved, type DlqRecord } from '../repository/event-dlq';
import { insertJournalEntries, type NewJournalEntry } from '../repository/event-journal';
import type { ActivityDeps } from './deps';
import type { Queryable } from '../repository/queryable';

export type DlqRetryOutcome = 'resolved' | 'retrying' | 'parked' | 'skipped';

export interface RetryDlqInput {
  ids: number[];
  /** Workflow time (ms): backoff is computed from it so that time-skipping tests move it. */
  now: number;
  /** Operator-requested: retry even entries that are parked or not yet due. */
  force: boolean;
}

/** DLQ retry: re-persist each entry's original payload into the journal with the consumer's repository. */
export function createDlqActivities({ pool, metrics, config, log }: ActivityDeps) {
  const { maxAttempts, baseDelayMs } = config.dlqRetry;
  return {
    async findDueDlqEntries(input: { now: number; limit: number }): Promise<number[]> {
      return dueDlqIds(pool, new Date(input.now), input.limit);
    },

    async retryDlqEntries(input: RetryDlqInput): Promise<Record<DlqRetryOutcome, number>> {
      const totals: Record<DlqRetryOutcome, number> = { resolved: 0, retrying: 0, parked: 0, skipped: 0 };
      for (const id of input.ids) {
        const outcome = await withTransaction(pool, async (client) => {
          const entry = await getDlqEntry(client, id, true);
          if (!entry || entry.status === 'resolved') return 'skipped';
          if (!input.force && (entry.status === 'parked' || entry.next_attempt_at.getTime() > input.now))
            return 'skipped';
          return retryOne(client, entry, input.now);
        });
        totals[outcome] += 1;
        if (outcome !== 'skipped') metrics.dlqRetry.inc({ result: outcome });
      }
      return totals;
    },
  };

  async function retryOne(db: Queryable, entry: DlqRecord, now: number): Promise<DlqRetryOutcome> {
    const attempt = entry.attempts + 1;
    const fail = async (error: string): Promise<DlqRetryOutcome> => {
      const park = attempt >= maxAttempts;
      await markDlqFailed(db, entry.id, error, new Date(now + baseDelayMs * 2 ** (attempt - 1)), park);
      log.warn({ dlq_id: entry.id, attempt, park }, `DLQ retry failed: ${error}`);
      return park ? 'parked' : 'retrying';
    };
    const journalEntry = toJournalEntry(entry, config.ingest.maxEventBytes);
    if (typeof journalEntry === 'string') return fail(journalEntry);
    await db.query('SAVEPOINT dlq_retry');
    try {
      const [row] = await insertJournalEntries(db, [journalEntry]);
      const journalId = row?.id ?? (await existingJournalId(db, journalEntry));
      if (journalId === undefined) return fail('Journal refused the entry as a duplicate but no matching row exists');
      await markDlqResolved(db, entry.id, journalId, new Date(now));
      return 'resolved';
    } catch (err) {
      await db.query('ROLLBACK TO SAVEPOINT dlq_retry');
      const { message, code } = err as { message: string; code?: string };
      return fail(`Insert into event_journal failed: ${message}${code ? ` (SQLSTATE ${code})` : ''}`);
    }
  }
}

/** Runs the entry's original value through the consumer's parser again; a string is the reason it still fails. */
function toJournalEntry(entry: DlqRecord, maxBytes: number): NewJournalEntry | string {
  const text = entry.payload !== null ? JSON.stringify(entry.payload) : entry.raw_value;
  if (text === null) return 'Entry has neither payload nor raw value to retry';
  if (text.startsWith('base64:')) return 'Entry value is not UTF-8 JSON; it cannot be journaled';
  const parsed = parseRecord(
    {
      topic: entry.topic,
      partition: entry.kafka_partition ?? 0,
      offset: String(entry.kafka_offset ?? 0),
      key: entry.kafka_key === null ? null : Buffer.from(entry.kafka_key),
      value: Buffer.from(text),
      headers: entry.tenant_id ? { 'x-tenant-id': entry.tenant_id } : {},
    },
    maxBytes,
  );
  if (!parsed.ok) return parsed.dlq.error;
  const hasCoordinates = entry.kafka_partition !== null && entry.kafka_offset !== null;
  return {
    ...parsed.entry,
    partition: hasCoordinates ? entry.kafka_partition : null,
    offset: hasCoordinates ? String(entry.kafka_offset) : null,
  };
}

async function existingJournalId(db: Queryable, e: NewJournalEntry): Promise<number | undefined> {
  const { rows } = await db.query<{ id: number }>(
    'SELECT id FROM event_journal WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3',
    [e.topic, e.partition, e.offset],
  );
  return rows[0]?.id;
}
