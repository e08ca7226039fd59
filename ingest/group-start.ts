import type { Admin, Kafka } from 'kafkajs';
import { disconnectAdmin } from '../shared/kafka';
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
 * So before its consumer joins, ingest commits the current end of every such partition for the group, and joins only
 * once the broker shows every partition committed. A start at the beginning needs nothing: the beginning resolves to
 * the same place again (retention aside, which the consumer and the monitor handle alike).
 *
 * The commit goes through kafkajs's admin setOffsets, which refuses while the group has members and, when two run at
 * once, commits only the partitions its own temporary member was given (attack18: two replicas starting together
 * left partitions uncommitted). So the broker's committed offsets are read again after every attempt, and what is
 * still missing is pinned again once the group is empty; replicas starting together wait for one another that way,
 * since none joins before all is committed. A member that died in the group (a SIGKILLed replica, a temporary member
 * cut short) holds it non-empty until its session expires, so attempts go on past that (groupStartDeadlineMs). Then a
 * pin that kept failing throws (starting without the start is what could lose records), while one that kept finding
 * live members that committed nothing goes on with a warning: replicas running without that partition's start, such
 * as the old replicas of a rolling deploy that adds a topic, which never subscribed to it. Their consumers would keep
 * this one out for good, and the partitions are this one's to start in memory, as before the pin.
 */

/** One partition's start: the end it had when read, committed as the group's offset. */
export interface PinnedStart {
  topic: string;
  partition: number;
  offset: string;
}

/**
 * How long attempts go on: past the session of a member that died in the group (a SIGKILLed replica, or the temporary
 * member of a setOffsets cut short, which kafkajs gives its default 30 s session), which holds the group non-empty
 * until the broker drops it, then long enough to commit every topic's start once it is empty (SET_OFFSETS_MS each),
 * and a little more. A coordinator still loading refuses for a few seconds at most.
 */
export function groupStartDeadlineMs(sessionTimeoutMs: number, topicCount: number): number {
  return Math.max(sessionTimeoutMs, KAFKAJS_DEFAULT_SESSION_MS) + topicCount * SET_OFFSETS_MS + PIN_MARGIN_MS;
}
const KAFKAJS_DEFAULT_SESSION_MS = 30_000;
/**
 * What one topic's setOffsets takes at least: its temporary consumer joins, pauses everything, commits on its first
 * fetch and stops only after that fetch, which with everything paused sleeps the consumer's maxWaitTimeInMs (kafkajs's
 * default 5 s; the admin client cannot set it). Measured 5.0 to 5.8 s idle, 7 s on a busy machine; the margin covers
 * the rest. With 10 s of margin for all topics together, two topics did not fit after a dead member's session
 * (attack18-pin-after-dead-member).
 */
const SET_OFFSETS_MS = 6_000;
const PIN_MARGIN_MS = 10_000;
/** One step of an attempt (reading the offsets, or one topic's setOffsets) gives up after this long. */
const PIN_ATTEMPT_TIMEOUT_MS = 15_000;
const PIN_RETRY_MIN_MS = 250;
const PIN_RETRY_MAX_MS = 2000;

/** Thrown when the start could not be committed in time: the consumer must not start without it. */
export class GroupStartError extends Error {
  override readonly name = 'GroupStartError';
}

/** Thrown when ingest was asked to stop while it was starting: it gave up on the start, and nothing was consumed. */
export class IngestStartInterrupted extends Error {
  override readonly name = 'IngestStartInterrupted';
}

/**
 * Commits the end of every partition of `topics` for which `groupId` has no committed offset, and returns once the
 * broker shows all of them committed: the partitions that had none when it began (committed by this call or by a
 * replica starting with it). Retried for `deadlineMs` (groupStartDeadlineMs), waiting `retryMinMs` (PIN_RETRY_MIN_MS)
 * after the first failure and twice as long after each next one; see above for what happens after that.
 */
export async function pinGroupStart(
  kafka: Kafka,
  groupId: string,
  topics: string[],
  log: Logger,
  opts: { deadlineMs?: number; retryMinMs?: number; signal?: AbortSignal } = {},
): Promise<PinnedStart[]> {
  const { signal } = opts;
  const deadlineMs = opts.deadlineMs ?? groupStartDeadlineMs(KAFKAJS_DEFAULT_SESSION_MS, topics.length);
  const retryMinMs = opts.retryMinMs ?? PIN_RETRY_MIN_MS;
  const deadline = Date.now() + deadlineMs;
  let admin = kafka.admin();
  let before: PinnedStart[] | undefined; // what the group lacked at the first reading
  let failures = 0;
  let readBack = false;
  // A stop asked for meanwhile ends the pin at once. An attempt in flight is left to itself, and its admin connection
  // is closed below; a commit of it that still lands writes an end read before any member started consuming.
  let stop = () => {};
  const interrupted = new Promise<never>((_, reject) => {
    stop = () => reject(new IngestStartInterrupted('ingest stopped while committing where its group starts'));
  });
  interrupted.catch(() => undefined);
  if (signal?.aborted) stop();
  signal?.addEventListener('abort', stop, { once: true });
  // Each step of an attempt gets at most what is left before the deadline, so the pin as a whole ends by then.
  const attempt = <T>(work: Promise<T>) => {
    const ms = Math.max(1, Math.min(PIN_ATTEMPT_TIMEOUT_MS, deadline - Date.now()));
    return Promise.race([withTimeout(work, ms, 'no answer in time'), interrupted]);
  };
  try {
    for (;;) {
      let missing: PinnedStart[] | undefined;
      let failure: string | undefined;
      try {
        missing = await attempt(uncommitted(admin, groupId, topics));
        before ??= missing;
        if (missing.length === 0) return before;
        // One setOffsets per topic (it takes one topic), each bounded on its own: each takes SET_OFFSETS_MS at least.
        for (const [topic, partitions] of byTopic(missing)) {
          await attempt(admin.setOffsets({ groupId, topic, partitions }));
        }
      } catch (err) {
        if (err instanceof IngestStartInterrupted) throw err;
        failure = (err as Error).message;
      }
      // The first commit that went through is read back at once; anything else waits, longer each time.
      if (failure === undefined && !readBack) {
        readBack = true;
        continue;
      }
      const members = failure !== undefined && /no running instances/.test(failure);
      const delay = Math.min(retryMinMs * 2 ** failures, PIN_RETRY_MAX_MS);
      failures += 1;
      if (Date.now() + delay > deadline) {
        const within = `within ${Math.round(deadlineMs / 1000)} s`;
        if (!members) {
          const why = failure ?? 'committed, but not all of it shows as committed';
          throw new GroupStartError(
            `Could not commit where consumer group ${groupId} starts (KAFKA_FROM_BEGINNING=false) ${within}: ${why}`,
          );
        }
        log.warn(
          { group: groupId, uncommitted: missing?.map((m) => `${m.topic}/${m.partition}`) },
          `Consumer group members without a committed start for these partitions stayed ${within}; ` +
            'starting anyway: kafkajs resolves their end in memory until their first batch',
        );
        const still = new Set(missing?.map((m) => `${m.topic}/${m.partition}`));
        return (before ?? []).filter((b) => !still.has(`${b.topic}/${b.partition}`));
      }
      if (failure !== undefined && !members) {
        log.warn(
          { err: failure, group: groupId, attempt: failures, retry_in_ms: delay },
          'Could not commit where the consumer group starts yet; retrying',
        );
        // A fresh client for the next attempt: the old one's disconnect may still be going on after its bound, and
        // would close the connection the next attempt opened on it.
        await disconnectAdmin(admin, undefined, log);
        admin = kafka.admin();
      }
      await Promise.race([new Promise((resolve) => setTimeout(resolve, delay)), interrupted]);
    }
  } finally {
    signal?.removeEventListener('abort', stop);
    await disconnectAdmin(admin, undefined, log);
  }
}

/** Every partition of `topics` with no committed offset for the group, with its current end. */
async function uncommitted(admin: Admin, groupId: string, topics: string[]): Promise<PinnedStart[]> {
  await admin.connect();
  const committed = await admin.fetchOffsets({ groupId, topics });
  const missing: PinnedStart[] = [];
  for (const topic of topics) {
    const has = new Set(
      committed
        .find((c) => c.topic === topic)
        ?.partitions.filter((p) => BigInt(p.offset) >= 0n)
        .map((p) => p.partition),
    );
    const ends = await admin.fetchTopicOffsets(topic);
    missing.push(
      ...ends
        .filter((e) => !has.has(e.partition))
        .map((e) => ({ topic, partition: e.partition, offset: e.high }))
        .sort((a, b) => a.partition - b.partition),
    );
  }
  return missing;
}

/** The given starts by topic, as setOffsets takes them (it refuses while the group has members). */
function byTopic(starts: PinnedStart[]): Map<string, { partition: number; offset: string }[]> {
  const topics = new Map<string, { partition: number; offset: string }[]>();
  for (const { topic, partition, offset } of starts) {
    topics.set(topic, [...(topics.get(topic) ?? []), { partition, offset }]);
  }
  return topics;
}
