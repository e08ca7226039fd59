import type { Context } from '@temporalio/activity';
import { publishChunkPage } from '../../activities/ordered-publish';
import { publishMessages } from '../../activities/publish';
import { withErasuresChecked } from '../../repository/erasure';
import { createProducer } from '../../shared/kafka';
import type { ReplayOrdering } from '../../journal/kinds';
import { answeringPool } from './answering-pool';
import { fakeTransactionalKafka, unreachableWhile } from './fake-transactional-kafka';

const TOPIC = 't';

/**
 * The setting of the unit attacks on a range page's send (attack45, attack46), under fake timers: a replay producer on
 * a fake transactional Kafka that refuses connections from `kafkaDown.from` to `kafkaDown.until` (ms from now), and a
 * pool answering every statement of the erasures' barrier.
 */
export async function pageSendSetting(kafkaDown: { from: number; until: number }) {
  const started = Date.now();
  const now = () => Date.now() - started;
  const { kafka, transactions } = fakeTransactionalKafka({
    topic: TOPIC,
    now,
    produceMs: 200,
    reachable: unreachableWhile(() => now() >= kafkaDown.from && now() < kafkaDown.until),
  });
  const producer = createProducer(kafka);
  await producer.connect();
  const pool = answeringPool();
  return {
    now,
    transactions,
    /** The transactions that held `value`. */
    holding: (value: string) => transactions.filter((t) => t.values.includes(value)),
    /** Five other pages, each holding one of the barrier's five holder slots through its failed send's fences. */
    holdBarrierSlots: () =>
      Array.from({ length: 5 }, (_, i) =>
        withErasuresChecked(pool, [100 + i], producer, (_erased, keep) =>
          publishMessages(producer, [{ topic: TOPIC, key: null, value: `other-${i}`, headers: {} }], { track: keep }),
        ).catch(() => undefined),
      ),
    /**
     * A one-event page (event 1, key k, `value`) of a range replay chunk, sent as replayRangePage sends it: under the
     * erasures' barrier, resumed from the attempt's heartbeat details; `onSend` hears each send begin.
     */
    sendPage: async (ctx: Context, value: string, ordering?: ReplayOrdering, onSend?: () => void) => {
      const progress = (ctx.info.heartbeatDetails as { cursor: number; pageSent?: number[] } | undefined) ?? {
        cursor: 0,
      };
      const outgoing = [{ id: 1, message: { topic: TOPIC, key: Buffer.from('k'), value, headers: {} } }];
      await withErasuresChecked(pool, [1], producer, (_erased, keep) =>
        publishChunkPage(producer, outgoing, { ordering, replayId: 'r1' }, progress, ctx, {
          keep: (sending) => {
            onSend?.();
            keep(sending);
          },
        }),
      );
      ctx.heartbeat({ cursor: 1 });
    },
  };
}

/**
 * (attack48, attack49) A chunk attempt's body: attempt 1 sends P1 at 0.8 s, then reads for `readMs` heartbeating every
 * `beatEveryMs` (an archive read: the server hears it, nothing asks the server), then sends P2; a retry sends P2.
 */
export function pagesAroundLongRead(
  sendPage: (ctx: Context, value: string) => Promise<void>,
  { readMs, beatEveryMs }: { readMs: number; beatEveryMs: number },
) {
  return async (ctx: Context, attempt: number) => {
    if (attempt === 1) {
      await new Promise((resolve) => setTimeout(resolve, 800));
      await sendPage(ctx, 'P1');
      for (let read = 0; read < readMs; read += beatEveryMs) {
        await new Promise((resolve) => setTimeout(resolve, beatEveryMs));
        ctx.heartbeat({ cursor: 1, reading: read });
      }
    }
    await sendPage(ctx, 'P2');
  };
}
