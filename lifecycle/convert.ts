import type pg from 'pg';
import type { PartitionInterval } from '../shared/config';
import type { Logger } from '../shared/logger';
import {
  boundReceivedAt,
  buildLegacyTwinIndexes,
  createPartitionedTwin,
  journalIsEmpty,
  switchToPartitions,
} from '../repository/journal-conversion';
import { journalIsPartitioned } from '../repository/journal-partitions';
import { nextPeriod, partitionName, periodStart } from './periods';

/** How often the short switch transaction may wait (lock_timeout each) for the table before the conversion gives up. */
const SWITCH_ATTEMPTS = 12;
const SWITCH_LOCK_TIMEOUT = '5s';

/**
 * Turns the single event_journal table (schema 001–008) into the time-partitioned one, online: ingest and the API
 * keep reading and writing the whole time except for one switch transaction of a few catalog updates.
 *
 * 1. On the old table, CONCURRENTLY, the non-unique twins of its unique indexes, so that it can be attached as a
 *    partition without any index being built under lock.
 * 2. A CHECK (received_at < T0) added NOT VALID and then validated (a scan that does not block writers). T0 is the
 *    start of the next period, at least an hour away, so rows written meanwhile satisfy it; for an empty table (a
 *    fresh install, nothing writing yet) the start of the current one.
 * 3. An empty partitioned table with the journal's columns, defaults and indexes.
 * 4. The switch, in one transaction: the old table renamed to event_journal_before_<T0>, the new one renamed to
 *    event_journal, the old one attached as its partition [MINVALUE, T0) (the validated CHECK spares the scan, the
 *    twins spare the index builds), the id sequence handed to the new table, the default partition created.
 *
 * No row is copied: every row stays where it is, with its id. Partitions from T0 on are created by maintenance
 * (ensurePartitions). Returns whether a conversion happened.
 */
export async function convertJournalToPartitions(
  client: pg.Client,
  interval: PartitionInterval,
  log: Logger,
  now = new Date(),
): Promise<boolean> {
  if (await journalIsPartitioned(client)) return false;
  const started = Date.now();
  await buildLegacyTwinIndexes(client);
  // An empty table (a fresh install) ends where the current period starts, so that new rows go to whole periods;
  // one with rows keeps taking them until the next period starts, at least an hour away.
  const empty = await journalIsEmpty(client);
  let bound = empty ? periodStart(now, interval) : nextPeriod(periodStart(now, interval), interval);
  if (!empty && bound.getTime() - now.getTime() < 3_600_000) bound = nextPeriod(bound, interval);
  await boundReceivedAt(client, bound);
  await createPartitionedTwin(client);
  const legacy = `event_journal_before_${partitionName(bound, interval).slice('event_journal_p'.length)}`;
  for (let attempt = 1; ; attempt++) {
    try {
      await switchToPartitions(client, legacy, bound, SWITCH_LOCK_TIMEOUT);
      break;
    } catch (err) {
      // 55P03: lock_timeout. Anything else, or too many waits, stops the start with the reason.
      if ((err as { code?: string }).code !== '55P03' || attempt >= SWITCH_ATTEMPTS) throw err;
      log.warn({ attempt }, 'Journal conversion: the table is busy, retrying the switch');
    }
  }
  log.info(
    { legacyPartition: legacy, bound: bound.toISOString(), ms: Date.now() - started },
    'Journal converted to time partitions (no row copied)',
  );
  return true;
}
