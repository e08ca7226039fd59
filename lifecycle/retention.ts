import type { JournalPartition } from '../repository/journal-partitions';

/** Days to keep each topic's events; '*' is every topic without its own entry; absent or null: forever. */
export type RetentionPolicies = Record<string, number | null>;

export const ANY_TOPIC = '*';

/** A partition whose every row is past retention: archived whole, verified, then dropped. */
export interface DropPartition {
  action: 'drop_partition';
  partition: string;
  from: string | null;
  to: string;
}

/** The rows of one topic in one partition that are past retention (others in it are not): archived, then deleted. */
export interface DeleteRows {
  action: 'delete_rows';
  partition: string;
  topic: string;
  /** Rows with received_at before this (the topic's cutoff, or the partition's end if sooner). */
  before: string;
}

export type RetentionStep = DropPartition | DeleteRows;

/** The policies in force: JOURNAL_RETENTION's, overridden per topic by PUT /retention's rows. */
export function effectivePolicies(
  configured: Record<string, number>,
  stored: Array<{ topic: string; keep_days: number | null }>,
): RetentionPolicies {
  // No prototype: a topic named like an Object member is just a key.
  const policies: RetentionPolicies = Object.assign(Object.create(null) as RetentionPolicies, configured);
  for (const row of stored) policies[row.topic] = row.keep_days;
  return policies;
}

export function keepDays(policies: RetentionPolicies, topic: string): number | null {
  // Own properties only: a topic may be named constructor or __proto__, and has no policy for it.
  if (Object.hasOwn(policies, topic)) return policies[topic] ?? null;
  return Object.hasOwn(policies, ANY_TOPIC) ? (policies[ANY_TOPIC] ?? null) : null;
}

/**
 * A topic's cutoff: rows received before it are past retention. Cutoffs fall on UTC midnights, so that runs within
 * a day find nothing new to do (one archive segment per topic, partition and day at most).
 */
export function cutoff(days: number, now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - days));
}

/**
 * What retention asks of the journal now. A partition (never the default one) whose every topic present is past
 * retention up to its end is dropped whole; otherwise each topic whose cutoff falls after the partition's start has
 * its older rows deleted. An empty partition is dropped when the policy for all topics ('*') has passed its end.
 * Pure: `topicsIn` names the topics each partition holds.
 */
export function planRetention(
  partitions: JournalPartition[],
  topicsIn: Record<string, string[]>,
  policies: RetentionPolicies,
  now: Date,
): RetentionStep[] {
  const steps: RetentionStep[] = [];
  for (const partition of partitions) {
    if (partition.isDefault || partition.to === null) continue;
    const to = partition.to;
    const topics = topicsIn[partition.name] ?? [];
    const cutoffs = (topics.length ? topics : [ANY_TOPIC]).map((topic) => {
      const days = keepDays(policies, topic);
      return { topic, at: days === null ? null : cutoff(days, now) };
    });
    if (cutoffs.every((c) => c.at !== null && c.at >= to)) {
      steps.push({ action: 'drop_partition', partition: partition.name, from: iso(partition.from), to: iso(to)! });
      continue;
    }
    for (const { topic, at } of cutoffs) {
      if (topic === ANY_TOPIC || at === null) continue;
      if (partition.from !== null && at <= partition.from) continue;
      const before = at < to ? at : to;
      steps.push({ action: 'delete_rows', partition: partition.name, topic, before: before.toISOString() });
    }
  }
  return steps;
}

function iso(date: Date | null): string | null {
  return date === null ? null : date.toISOString();
}

/** Dead letters past retention: a topic's, or (topic null) every topic's without a policy of its own. */
export interface DeadLetterExpiry {
  topic: string | null;
  /** Topics with a policy of their own (skipped by the topic-null expiry). */
  exceptTopics: string[];
  /** Dead letters received before this are past retention. */
  before: string;
}

/**
 * What retention asks of the DLQ now: a dead letter is kept as long as its topic's events (a record rejected is
 * personal data like one journaled). Not archived: a dead letter past its topic's retention is deleted.
 */
export function planDeadLetterExpiry(policies: RetentionPolicies, now: Date): DeadLetterExpiry[] {
  const own = Object.keys(policies).filter((topic) => topic !== ANY_TOPIC);
  const expiries: DeadLetterExpiry[] = [];
  for (const topic of own) {
    const days = policies[topic];
    if (days !== null && days !== undefined) {
      expiries.push({ topic, exceptTopics: [], before: cutoff(days, now).toISOString() });
    }
  }
  const rest = keepDays(policies, ANY_TOPIC);
  if (Object.hasOwn(policies, ANY_TOPIC) && rest !== null) {
    expiries.push({ topic: null, exceptTopics: own, before: cutoff(rest, now).toISOString() });
  }
  return expiries;
}
