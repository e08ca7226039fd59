import type { Kafka, RecordMetadata } from 'kafkajs';
import { committedReadBack } from '../../shared/kafka';

/**
 * attack43 — Invariant 1 (nothing lost: a send resolves only if its transaction is committed).
 *
 * Attack: committedReadBack (shared/kafka.ts) decides a fenced re-ask's transaction by seeking a fresh read-committed
 * consumer to the send's first acknowledged record and taking "the record delivered" as committed. It trusts kafkajs
 * 2.2.4's Batch to drop aborted records. But kafkajs's filterAbortedMessages (consumer/filterAbortedMessages.js)
 * activates ONE aborted-transaction entry per message it walks ("if message.offset >= remaining[0].firstOffset:
 * shift one"), starting from the fetched offset. Kafka's fetch response lists every aborted transaction overlapping
 * the fetched range, including ones that began BEFORE the fetch offset (TransactionIndex.collectAbortedTxns:
 * lastOffset >= fetchOffset && firstOffset < upperBound). A consumer that reads a partition from its start has walked
 * past those earlier first offsets one by one; the read-back seeks straight into the middle, so the first message it
 * walks (our record) consumes the entry of the OTHER aborted transaction that began earlier, and our own aborted
 * record is delivered as if committed.
 *
 * Reproduction (the partition as a read-committed fetch from our offset 10 returns it):
 *   offsets 5, 9: records of another transactional producer X (pid 5) — another slot of this producer, or of another
 *                 worker, fenced in the same incident (fenceOthers fences all 8 slots of a scope at once);
 *   offset 10:    our record (pid 7), the send's first acknowledged record (baseOffset 10);
 *   offset 11:    X's ABORT marker;  offset 12: our ABORT marker (our EndTxn never reached the coordinator,
 *                 the fence aborted us: attack42's "EndTxn dropped" case).
 *   abortedTransactions in the fetch response: [{pid 5, first 5}, {pid 7, first 10}] (either order puts X first:
 *   the txn index is in marker order, and X also has the lower first offset).
 * The consumer below is kafkajs's own Runner.handleBatch and Batch (its END_BATCH_PROCESS and eachBatch), fed the
 * fetch that the seek gets; only the broker is faked.
 *
 * Observed: committedReadBack answers 'committed' for an aborted transaction, so commitSettled resolves the send and
 * the activity does not retry: the page is lost (a read-committed consumer never sees it).
 * Expected: 'aborted' (the send rejects, is fenced, and its retry republishes the page).
 *
 * Suspected cause: shared/kafka.ts committedReadBack (judge/eachBatch, ~lines 704-728) relies on kafkajs's aborted
 * filter, which is only correct for a consumer that walked the partition from before every listed aborted
 * transaction's first offset (node_modules/kafkajs/src/consumer/filterAbortedMessages.js: one shift per message).
 *
 * Fixed: committedReadBack no longer trusts kafkajs's filter. It reads uncommitted (Kafka then lists no aborted
 * transactions; the fake broker below does the same), takes the producer id of the record's batch, and decides by the
 * first control record of that producer id after the record: its key's type, commit or abort.
 */

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Batch = require('kafkajs/src/consumer/batch') as new (
  topic: string,
  fetchedOffset: string,
  data: object,
) => object;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Runner = require('kafkajs/src/consumer/runner') as new (opts: object) => {
  running: boolean;
  handleBatch(batch: object): Promise<void>;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const InstrumentationEventEmitter = require('kafkajs/src/instrumentation/emitter') as new () => {
  addListener(event: string, listener: (e: unknown) => void): () => void;
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createLogger, LEVELS } = require('kafkajs/src/loggers') as {
  createLogger: (opts: object) => object;
  LEVELS: Record<string, number>;
};

const TOPIC = 'replay-target';
const PARTITION = 0;
const ABORT_KEY = Buffer.from([0, 0, 0, 0]);

const record = (offset: string, producerId: string) => ({
  offset,
  key: Buffer.from(`k${offset}`),
  value: Buffer.from(`v${offset}`),
  headers: {},
  timestamp: '0',
  isControlRecord: false,
  batchContext: { producerId, inTransaction: true, isControlBatch: false },
});
const abortMarker = (offset: string, producerId: string) => ({
  offset,
  key: ABORT_KEY,
  value: Buffer.from([0, 0, 0, 0, 0, 0]),
  headers: {},
  timestamp: '0',
  isControlRecord: true,
  batchContext: { producerId, inTransaction: true, isControlBatch: true },
});

/**
 * What a Fetch from `fetchOffset` returns for the partition above (record batches containing >= 10). Kafka lists the
 * aborted transactions only to a read-committed fetch; a read-uncommitted one gets none.
 */
function fetched(fetchOffset: string, interleaved: boolean, readUncommitted: boolean) {
  return new Batch(TOPIC, fetchOffset, {
    partition: PARTITION,
    highWatermark: '13',
    lastStableOffset: '13',
    abortedTransactions: readUncommitted
      ? null
      : interleaved
        ? [
            { producerId: '5', firstOffset: '5' },
            { producerId: '7', firstOffset: '10' },
          ]
        : [{ producerId: '7', firstOffset: '10' }],
    messages: interleaved
      ? [record('10', '7'), abortMarker('11', '5'), abortMarker('12', '7')]
      : [record('10', '7'), abortMarker('12', '7')],
  });
}

/** A kafka whose consumers run kafkajs's own Runner over the fetch a seek brings. */
function fakeKafka(interleaved: boolean) {
  const kafka = {
    consumer: ({ readUncommitted = false }: { readUncommitted?: boolean }) => {
      const instrumentation = new InstrumentationEventEmitter();
      let runner: InstanceType<typeof Runner> | undefined;
      return {
        events: { END_BATCH_PROCESS: 'consumer.end_batch_process' },
        on: (event: string, listener: (e: unknown) => void) => instrumentation.addListener(event, listener),
        connect: async () => undefined,
        subscribe: async () => undefined,
        run: async ({ eachBatch }: { eachBatch: (p: object) => Promise<void> }) => {
          runner = new Runner({
            logger: createLogger({ level: LEVELS.NOTHING, logCreator: () => () => undefined }),
            consumerGroup: {
              resolveOffset: () => undefined,
              heartbeat: async () => undefined,
              getNodeIds: () => [],
              commitOffsetsIfNecessary: async () => undefined,
            },
            instrumentationEmitter: instrumentation,
            eachBatch,
            autoCommit: false,
            concurrency: 1,
            onCrash: () => undefined,
          });
          runner.running = true;
        },
        seek: ({ offset }: { offset: string }) => {
          setImmediate(() => void runner!.handleBatch(fetched(offset, interleaved, readUncommitted)));
        },
        disconnect: async () => undefined,
      };
    },
  };
  return kafka as unknown as Kafka;
}

const acknowledged: RecordMetadata[] = [{ topicName: TOPIC, partition: PARTITION, errorCode: 0, baseOffset: '10' }];

const readBack = (interleaved: boolean) =>
  committedReadBack(fakeKafka(interleaved), acknowledged, 'scope:read-back', undefined, {
    timeoutMs: 2_000,
    disconnectTimeoutMs: 100,
  });

it('reads an aborted transaction interleaved with an earlier aborted one as aborted', async () => {
  // Control: our aborted transaction alone on the partition is read as aborted (the fake consumer works).
  expect(await readBack(false)).toBe('aborted');
  // Another producer's aborted transaction began before ours and ended after our first record: read as committed.
  expect(await readBack(true)).toBe('aborted');
});
