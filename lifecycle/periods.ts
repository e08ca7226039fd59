import type { PartitionInterval } from '../shared/config';

/** The start (UTC) of the period holding t. */
export function periodStart(t: Date, interval: PartitionInterval): Date {
  return interval === 'month'
    ? new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), 1))
    : new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
}

/** The start of the period after the one starting at `start`. */
export function nextPeriod(start: Date, interval: PartitionInterval): Date {
  return interval === 'month'
    ? new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1))
    : new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate() + 1));
}

/** event_journal_p2027_01 (month) or event_journal_p2027_01_15 (day), from the period's start. */
export function partitionName(start: Date, interval: PartitionInterval): string {
  const [y, m, d] = start.toISOString().slice(0, 10).split('-');
  return interval === 'month' ? `event_journal_p${y}_${m}` : `event_journal_p${y}_${m}_${d}`;
}
