import { ApplicationFailure } from '@temporalio/activity';
import type { Producer } from 'kafkajs';
import type { ReplayMessage } from '../journal/lineage';
import { isUnknownTopicError, refusedRecordsError, withSendSignal, type ReplayProducer } from '../shared/kafka';

/** How long a send may run before the topics it goes to are looked up again (a topic deleted mid-replay). */
export const SLOW_SEND_CHECK_MS = 2_000;

export interface PublishOptions {
  /** The activity's cancellation signal: the wait (not the send) ends when it aborts. */
  signal?: AbortSignal;
  /** Given the send itself, which may outlive this call (activities/ordered-publish.ts waits for it). */
  track?: (sending: Promise<unknown>) => void;
}

/**
 * Sends messages in a single producer call (one request per broker), acks from all in-sync replicas. Key bytes and
 * headers go out as given.
 *
 * kafkajs cannot abort a send, so the signal (the activity's cancellationSignal) ends the wait, not the send: a
 * cancelled or timed-out attempt throws the signal's reason at once and frees its worker slot, while the send runs
 * to its end in the background, bounded by the producer's finite retries (its failure is handled there).
 * A topic the broker does not have fails with the non-retryable `UnknownTopic` naming it: looked up before sending
 * (a short-lived cached list), and again when the send fails for an unknown topic or is slow. Records the broker
 * refuses as such (too large for the topic) fail with the non-retryable `InvalidRequest`.
 */
export async function publishMessages(
  producer: Producer,
  messages: ReplayMessage[],
  { signal, track }: PublishOptions = {},
): Promise<void> {
  if (messages.length === 0) return;
  signal?.throwIfAborted();
  const byTopic = new Map<string, ReplayMessage[]>();
  for (const m of messages) {
    const list = byTopic.get(m.topic);
    if (list) list.push(m);
    else byTopic.set(m.topic, [m]);
  }
  const topics = [...byTopic.keys()];
  const replay = withTopicLookups(producer);
  if (replay) await refuseUnknown(replay, topics, false, signal);

  // Bound to the attempt: a send still waiting for a producer slot when the attempt ends is not made (its retry is).
  const sent = withSendSignal(signal, () =>
    producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, list]) => ({
        topic,
        messages: list.map(({ key, value, headers }) => ({ key, value, headers })),
      })),
    }),
  );
  sent.catch(() => undefined); // once this call has returned (cancelled, unknown topic) nobody awaits the send
  track?.(sent);

  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal?.reason ?? new Error('publish aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  // A send to a topic deleted since the last lookup retries inside kafkajs for seconds; look the topics up again
  // while it runs, so that the activity fails as UnknownTopic now instead of after the producer's retries.
  const watched = replay
    ? new Promise<never>((_, reject) => {
        const check = () => {
          refuseUnknown(replay, topics, true, signal).then(
            () => (timer = setTimeout(check, SLOW_SEND_CHECK_MS)),
            reject,
          );
        };
        timer = setTimeout(check, SLOW_SEND_CHECK_MS);
      })
    : undefined;
  watched?.catch(() => undefined);
  try {
    await Promise.race([sent, aborted, ...(watched ? [watched] : [])]);
  } catch (err) {
    if (replay && isUnknownTopicError(err)) await refuseUnknown(replay, topics, true, signal);
    // A record the topic refuses (too large for it, not allowed) is refused again on every retry of the activity.
    const refused = refusedRecordsError(err);
    if (refused) {
      throw ApplicationFailure.nonRetryable(
        `Kafka refused the records for ${topics.join(', ')} (${refused}): ${(err as Error).message}`,
        'InvalidRequest',
      );
    }
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/** The producer as a ReplayProducer when it is one (createProducer's is; a bare kafkajs producer is not). */
function withTopicLookups(producer: Producer): ReplayProducer | undefined {
  const candidate = producer as Partial<ReplayProducer>;
  return typeof candidate.missingTopics === 'function' && typeof candidate.renew === 'function'
    ? (producer as ReplayProducer)
    : undefined;
}

/** Throws UnknownTopic naming the topics the cluster does not have; a lookup that fails is not a verdict. */
async function refuseUnknown(
  producer: ReplayProducer,
  topics: string[],
  fresh: boolean,
  signal: AbortSignal | undefined,
): Promise<void> {
  let missing: string[];
  try {
    missing = await producer.missingTopics(topics, { fresh });
  } catch {
    return; // Kafka unreachable: the send itself will tell, and the activity's retry policy applies
  }
  signal?.throwIfAborted();
  if (missing.length === 0) return;
  // The kafkajs producer keeps asking the broker for a topic it sent to once: start over without it.
  if (fresh) producer.renew(`topic ${missing.join(', ')} no longer exists`);
  throw ApplicationFailure.nonRetryable(
    `Kafka has no topic ${missing.map((t) => `"${t}"`).join(', ')} to publish to (deleted, or never created)`,
    'UnknownTopic',
    { topics: missing },
  );
}
