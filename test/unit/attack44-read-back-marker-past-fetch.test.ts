import type { Kafka, RecordMetadata } from 'kafkajs';
import { committedReadBack } from '../../shared/kafka';

/**
 * attack44 — Invariant: a replay send resolves only if its transaction is committed and rejects only if it is
 * aborted (or a documented unknown); a committed send that is rejected is retried by its activity and the page is in
 * the topic twice.
 *
 * Attack: committedReadBack (shared/kafka.ts) decides a fenced re-ask by fetching, read uncommitted, from the send's
 * first acknowledged record and looking in the SAME eachBatch for the first control record of the record's producer
 * id. kafkajs 2.2.4 fetches at most maxBytesPerPartition (1 MiB, its default; the read-back's consumer sets none)
 * per partition, and a fetch always holds the first record batch whole, however big (KIP-74). A replay page whose
 * records in one partition make a record batch of more than 1 MiB (kafkajs sends one batch per partition per
 * sendBatch: a page of 500 events of 2.1 KB, or ONE event near INGEST_MAX_EVENT_BYTES, 1 MiB by default, which the
 * journal accepts and a replay must be able to publish) is therefore fetched ALONE: its commit marker, the next
 * record, is in the next fetch, which holds control records only. kafkajs gives such a fetch to no eachBatch
 * (runner.js handleBatch: isEmptyDueToFiltering -> resolveOffset, return). The read-back's answer to "a fetch held the
 * record but not its marker" is to seek back to the record (READ_BACK_AGAIN_MS), which fetches the same batch alone
 * again: the marker is never seen, however long it has been there. The read-back answers unknown after READ_BACK_MS,
 * commitSettled rethrows the fenced refusal, the send rejects, the activity retries and the page (whose transaction
 * IS committed) is published a second time.
 *
 * Reproduction (fakes: the broker's fetch is faked as Kafka answers it, batch-granular with maxBytes 1 MiB and the
 * first batch whole; the consumer is kafkajs's own Batch and Runner.handleBatch, as attack43's read-back tests use):
 *   control: our record at offset 10 (a 1 KB batch), our COMMIT marker at 11   -> 'committed' (the fake works);
 *   attack:  our record at offset 10 (a 1.2 MB batch: one 1.1 MiB event), our COMMIT marker at 11 -> expected
 *            'committed'.
 * With a real stack: a replay target topic with max.message.bytes 2 MiB; journal an event of 1.1 MiB; replay it
 * with a broker pause that makes the commit's first ask time out while the coordinator writes the markers, and an
 * erasure's fenceOthers (or any InitProducerId of the slot's id) in between (attack39/42's fenced re-ask); the
 * warning 'A replay commit asked again was refused as fenced; read back' shows found: 'unknown' and the topic, read
 * committed, holds the event twice after the activity's retry.
 *
 * Observed: committedReadBack resolves undefined (unknown) for a committed transaction whose marker is the very next
 * offset after the record.
 * Expected: 'committed'.
 *
 * Suspected cause: shared/kafka.ts committedReadBack, the eachBatch judge (shared/kafka.ts:766-783): the marker is looked for
 * only in a batch kafkajs gives to eachBatch, and the retry seeks back to `baseOffset` (shared/kafka.ts:780), which repeats the
 * same fetch; nothing reads the control-records-only fetch that follows a batch of more than maxBytesPerPartition
 * (shared/kafka.ts:753: the consumer's maxBytesPerPartition is not raised, and END_BATCH_PROCESS/isEmptyDueToFiltering is not used).
 *
 * Fixed: the read-back's consumer fetches up to READ_BACK_FETCH_BYTES (16 MiB) per partition, so the marker comes in
 * the fetch of a batch up to that size (the fake broker above answers with the consumer's own maxBytesPerPartition).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Batch = require('kafkajs/src/consumer/batch') as new (
  topic: string,
  fetchedOffset: string,
  data: object,
) => { rawMessages: { offset: string }[] };
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
const PRODUCER_ID = '7';
const COMMIT_KEY = Buffer.from([0, 0, 0, 1]); // version 0, type 1 (commit)
/** kafkajs's default maxBytesPerPartition (consumer/index.js), for a consumer that sets none. */
const DEFAULT_MAX_BYTES_PER_PARTITION = 1048576;

interface LogBatch {
  bytes: number;
  records: object[];
}

const dataBatch = (offset: string, bytes: number): LogBatch => ({
  bytes,
  records: [
    {
      offset,
      key: Buffer.from(`k${offset}`),
      value: Buffer.alloc(16),
      headers: {},
      timestamp: '0',
      isControlRecord: false,
      batchContext: { producerId: PRODUCER_ID, inTransaction: true, isControlBatch: false },
    },
  ],
});
const commitBatch = (offset: string): LogBatch => ({
  bytes: 78,
  records: [
    {
      offset,
      key: COMMIT_KEY,
      value: Buffer.from([0, 0, 0, 0, 0, 0]),
      headers: {},
      timestamp: '0',
      isControlRecord: true,
      batchContext: { producerId: PRODUCER_ID, inTransaction: true, isControlBatch: true },
    },
  ],
});

/** The partition: our transaction's batch at offset 10, its COMMIT marker at 11 (nothing else written since). */
const partitionLog = (ourBytes: number): LogBatch[] => [dataBatch('10', ourBytes), commitBatch('11')];

/** A read-uncommitted Fetch from `offset` as Kafka answers it: whole batches up to maxBytes, the first always. */
function fetch(log: LogBatch[], offset: bigint, maxBytes: number) {
  const from = log.findIndex((b) => b.records.some((r) => BigInt((r as { offset: string }).offset) >= offset));
  const messages: object[] = [];
  let size = 0;
  for (const b of from < 0 ? [] : log.slice(from)) {
    if (messages.length > 0 && size + b.bytes > maxBytes) break;
    size += b.bytes;
    messages.push(...b.records);
  }
  return new Batch(TOPIC, offset.toString(), {
    partition: PARTITION,
    highWatermark: '12',
    lastStableOffset: '12',
    abortedTransactions: null,
    messages,
  });
}

/** A consumer that fetches in a loop from its position (seek sets it), each fetch through kafkajs's Runner. */
function fakeKafka(log: LogBatch[]) {
  const kafka = {
    consumer: ({ maxBytesPerPartition = DEFAULT_MAX_BYTES_PER_PARTITION }: { maxBytesPerPartition?: number }) => {
      const instrumentation = new InstrumentationEventEmitter();
      let position: bigint | undefined;
      let running = false;
      let loop: Promise<void> | undefined;
      return {
        events: { END_BATCH_PROCESS: 'consumer.end_batch_process' },
        on: (event: string, listener: (e: unknown) => void) => instrumentation.addListener(event, listener),
        connect: async () => undefined,
        subscribe: async () => undefined,
        run: async ({ eachBatch }: { eachBatch: (p: object) => Promise<void> }) => {
          const runner = new Runner({
            logger: createLogger({ level: LEVELS.NOTHING, logCreator: () => () => undefined }),
            consumerGroup: {
              resolveOffset: () => undefined,
              heartbeat: async () => undefined,
              getNodeIds: () => [],
              commitOffsetsIfNecessary: async () => undefined,
              commitOffsets: async () => undefined,
            },
            instrumentationEmitter: instrumentation,
            eachBatch,
            autoCommit: false,
            concurrency: 1,
            onCrash: () => undefined,
          });
          runner.running = true;
          running = true;
          loop = (async () => {
            while (running) {
              await new Promise((resolve) => setTimeout(resolve, 20));
              if (position === undefined) continue;
              const batch = fetch(log, position, maxBytesPerPartition);
              const last = batch.rawMessages.at(-1);
              await runner.handleBatch(batch);
              // The fetch position moves past what was fetched (resolved offsets), unless a seek moved it meanwhile.
              if (last && position !== undefined && BigInt(last.offset) >= position)
                position = BigInt(last.offset) + 1n;
            }
          })();
        },
        seek: ({ offset }: { offset: string }) => {
          position = BigInt(offset);
        },
        disconnect: async () => {
          running = false;
          await loop;
        },
      };
    },
  };
  return kafka as unknown as Kafka;
}

const acknowledged: RecordMetadata[] = [{ topicName: TOPIC, partition: PARTITION, errorCode: 0, baseOffset: '10' }];

const readBack = (ourBytes: number) =>
  committedReadBack(fakeKafka(partitionLog(ourBytes)), acknowledged, 'scope:read-back', undefined, {
    timeoutMs: 3_000,
    disconnectTimeoutMs: 500,
  });

it('reads back a committed transaction whose record batch is larger than a fetch of one partition', async () => {
  // Control: a 1 KB batch and its marker come in one fetch.
  expect(await readBack(1_024)).toBe('committed');
  // A 1.2 MB batch (one event of 1.1 MiB, under INGEST_MAX_EVENT_BYTES' order of size): its marker is the next
  // fetch, control records only.
  expect(await readBack(1_200_000)).toBe('committed');
});
