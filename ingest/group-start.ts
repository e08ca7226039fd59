import type { Admin, Kafka } from 'kafkajs';
import type { Logger } from '../shared/logger';
import { withTimeout } from '../shared/timeout';

/**
 * Where a consumer group starts, made durable before anything is consumed (invariant 1, docs/integrity.md).
 *
 * With KAFKA_FROM_BEGINNING=false a group that has committed nothing for a partition starts at its end. kafkajs
 * resolves that end in memory when it first fetches and commits nothing until a batch is journaled, so before the
 * first commit the start lives nowhere else:
 * - a consumer stopped or crashed before its first commit resolves the end again when it comes back, later, and the
 *   records sent in between are never journaled;
 * - the lag monitor, which reads only what the broker stores for the group, cannot tell where the consumer is and
 *   reads it as caught up, so a consumer that stopped fetching before its first commit looks healthy (attack17).
 * So before its consumer joins, ingest commits the current end of every such partition for the group. A start at the
 * beginning needs nothing: the beginning resolves to the same place again (retention aside, which the consumer and
 * the monitor handle alike).
 *
 * The commit goes through kafkajs's admin setOffsets, which refuses while the group has members. When it has members,
 * they hold the group's start (one of them committed it before it joined), and nothing is committed here. A failure
 * (a coordinator still loading on a new cluster does that for seconds) is retried; if the start still cannot be
 * committed, the consumer does not start: starting without it is what could lose records.
 */

/** One partition whose start was committed. */
export interface PinnedStart {
  topic: string;
  partition: number;
  offset: string;
}

/** Attempts go on for this long (a coordinator still loading answers with a retriable refusal for a while). */
const PIN_DEADLINE_MS = 30_000;
/** One attempt gives up after this long (kafkajs's setOffsets joins the group with a consumer of its own). */
const PIN_ATTEMPT_TIMEOUT_MS = 15_000;
const PIN_RETRY_MIN_MS = 250;
const PIN_RETRY_MAX_MS = 5000;

/** Thrown when the start could not be committed in time: the consumer must not start without it. */
export class GroupStartError extends Error {
  override readonly name = 'GroupStartError';
}

/**
 * Commits the end of every partition of `topics` for which `groupId` has no committed offset, while the group has
 * no member, and returns what it committed (nothing when the group has members). Failures are retried for
 * PIN_DEADLINE_MS; after that it throws GroupStartError, and the consumer is not started without its start.
 */
export async function pinGroupStart(
  kafka: Kafka,
  groupId: string,
  topics: string[],
  log: Logger,
  deadlineMs = PIN_DEADLINE_MS,
): Promise<PinnedStart[]> {
  const deadline = Date.now() + deadlineMs;
  const admin = kafka.admin();
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        return await withTimeout(pin(admin, groupId, topics), PIN_ATTEMPT_TIMEOUT_MS, 'no answer in time');
      } catch (err) {
        const message = (err as Error).message;
        if (/no running instances/.test(message)) {
          log.debug({ group: groupId }, 'Consumer group has members: they hold its start');
          return [];
        }
        const delay = Math.min(PIN_RETRY_MIN_MS * 2 ** attempt, PIN_RETRY_MAX_MS);
        if (Date.now() + delay > deadline) {
          throw new GroupStartError(
            `Could not commit where consumer group ${groupId} starts (KAFKA_FROM_BEGINNING=false) ` +
              `within ${Math.round(deadlineMs / 1000)} s: ${message}`,
          );
        }
        log.warn(
          { err: message, group: groupId, attempt: attempt + 1, retry_in_ms: delay },
          'Could not commit where the consumer group starts yet; retrying',
        );
        await admin.disconnect().catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

async function pin(admin: Admin, groupId: string, topics: string[]): Promise<PinnedStart[]> {
  await admin.connect();
  const committed = await admin.fetchOffsets({ groupId, topics });
  const pinned: PinnedStart[] = [];
  for (const topic of topics) {
    const has = new Set(
      committed
        .find((c) => c.topic === topic)
        ?.partitions.filter((p) => BigInt(p.offset) >= 0n)
        .map((p) => p.partition),
    );
    const ends = await admin.fetchTopicOffsets(topic);
    const partitions = ends
      .filter((e) => !has.has(e.partition))
      .map((e) => ({ partition: e.partition, offset: e.high }))
      .sort((a, b) => a.partition - b.partition);
    if (partitions.length === 0) continue;
    await admin.setOffsets({ groupId, topic, partitions });
    pinned.push(...partitions.map((p) => ({ topic, ...p })));
  }
  return pinned;
}
