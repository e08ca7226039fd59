import fc from 'fast-check';
import * as kafkajs from 'kafkajs';
import { commitErrorKind, commitSettled } from '../../shared/kafka';

/**
 * commitSettled (shared/kafka.ts): a replay commit is asked again while the coordinator gives no answer (a request
 * timeout, a lost connection: kafkajs marks them retriable) or is still writing an earlier ask's markers
 * (CONCURRENT_TRANSACTIONS), and settles on the first answer: success resolves, a refusal (fenced, aborted) rejects
 * with it. Asked without an answer until its time is up, it rejects with the last error. The real case (a broker
 * frozen as the EndTxn was written) is test/faults/attack39-commit-timed-out-but-committed-doubled.test.ts.
 */
type Answer = 'timeout' | 'concurrent' | 'fenced' | 'committed';

const failure = (answer: Exclude<Answer, 'committed'>): Error =>
  ({
    timeout: Object.assign(new Error('Request EndTxn(key: 26, version: 1) timed out'), { retriable: true }),
    concurrent: Object.assign(new Error('concurrent transactions'), {
      retriable: false,
      type: 'CONCURRENT_TRANSACTIONS',
    }),
    fenced: Object.assign(new Error('producer fenced'), { retriable: false, type: 'PRODUCER_FENCED' }),
  })[answer];

function transaction(answers: Answer[]) {
  const asked: Answer[] = [];
  return {
    asked,
    commit: async () => {
      const answer = answers[asked.length] ?? 'timeout';
      asked.push(answer);
      if (answer !== 'committed') throw failure(answer);
    },
  };
}

it('asks again until the first answer, and settles as that answer says', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom<Answer>('timeout', 'concurrent'), { maxLength: 6 }),
      fc.constantFrom<Answer>('committed', 'fenced'),
      async (unanswered, answer) => {
        const t = transaction([...unanswered, answer]);
        const settled = await commitSettled(t, 'id', undefined, { settleMs: 60_000, firstPauseMs: 1 }).then(
          () => 'committed',
          (err: Error) => err.message,
        );
        expect(settled).toBe(answer === 'committed' ? 'committed' : 'producer fenced');
        expect(t.asked).toEqual([...unanswered, answer]);
      },
    ),
    { numRuns: 40 },
  );
});

it('gives up with the last error when no answer comes in its time', async () => {
  const t = transaction([]);
  await expect(commitSettled(t, 'id', undefined, { settleMs: 100, firstPauseMs: 5 })).rejects.toThrow(/timed out/);
  expect(t.asked.length).toBeGreaterThan(1);
  expect(new Set(t.asked)).toEqual(new Set(['timeout']));
});

it('does not ask again after an error that is not about the answer (a transaction already ended)', async () => {
  let asked = 0;
  const ended = {
    commit: async () => {
      asked++;
      throw Object.assign(new Error('Cannot continue to use transaction once ended'), { retriable: false });
    },
  };
  await expect(commitSettled(ended, 'id', undefined, { settleMs: 60_000, firstPauseMs: 1 })).rejects.toThrow(/ended/);
  expect(asked).toBe(1);
});

/**
 * The errors kafkajs's commit really ends with (node_modules/kafkajs/src: producer/eosManager commit, cluster
 * findGroupCoordinator, retry/), built with its own classes and wrapped by its own retrier: a request timeout or a
 * refused connection that its retries gave up on (KafkaJSNumberOfRetriesExceeded, not retriable, the error in
 * `cause`), a coordinator not found, and the coordinator's "not yet" answers are no answer: asked again. The
 * coordinator's refusals settle (rejected at once), and so does an error of this side.
 */
// kafkajs's error classes as it builds them (its types leave some out, and some constructors' arguments).
const {
  KafkaJSBrokerNotFound,
  KafkaJSConnectionClosedError,
  KafkaJSConnectionError,
  KafkaJSGroupCoordinatorNotFound,
  KafkaJSLockTimeout,
  KafkaJSNonRetriableError,
  KafkaJSRequestTimeoutError,
} = kafkajs as unknown as Record<string, new (message: string, options?: object) => Error>;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createErrorFromCode } = require('kafkajs/src/protocol/error') as {
  createErrorFromCode: (code: number) => Error & { type: string; retriable: boolean };
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const createRetry = require('kafkajs/src/retry') as (opts: object) => <T>(fn: () => Promise<T>) => Promise<T>;

type Kind = 'unanswered' | 'refused' | 'local';
const roots: [string, Kind, () => Error][] = [
  [
    'EndTxn timed out',
    'unanswered',
    () =>
      new KafkaJSRequestTimeoutError('Request EndTxn(key: 26, version: 1) timed out', {
        broker: '127.0.0.1:9092',
        correlationId: 7,
        createdAt: 0,
        sentAt: 0,
        pendingDuration: 0,
      }),
  ],
  [
    'connection refused',
    'unanswered',
    () => new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092', { code: 'ECONNREFUSED' }),
  ],
  [
    'connection closed',
    'unanswered',
    () =>
      new KafkaJSConnectionClosedError('Closed connection', {
        host: '127.0.0.1',
        port: 9092,
      }),
  ],
  [
    'coordinator not found',
    'unanswered',
    () => new KafkaJSGroupCoordinatorNotFound('Failed to find group coordinator'),
  ],
  ['broker not found', 'unanswered', () => new KafkaJSBrokerNotFound('Broker 1 not found in the cached metadata')],
  ['lock timeout', 'unanswered', () => new KafkaJSLockTimeout('Timeout while acquiring lock (1 waiting locks)')],
  ['CONCURRENT_TRANSACTIONS', 'unanswered', () => createErrorFromCode(51)],
  ['GROUP_LOAD_IN_PROGRESS', 'unanswered', () => createErrorFromCode(14)],
  ['GROUP_COORDINATOR_NOT_AVAILABLE', 'unanswered', () => createErrorFromCode(15)],
  ['NOT_COORDINATOR_FOR_GROUP', 'unanswered', () => createErrorFromCode(16)],
  ['INVALID_PRODUCER_EPOCH', 'refused', () => createErrorFromCode(47)],
  ['INVALID_TXN_STATE', 'refused', () => createErrorFromCode(48)],
  ['INVALID_PRODUCER_ID_MAPPING', 'refused', () => createErrorFromCode(49)],
  ['TRANSACTIONAL_ID_AUTHORIZATION_FAILED', 'refused', () => createErrorFromCode(53)],
  ['ended', 'local', () => new KafkaJSNonRetriableError('Cannot continue to use transaction once ended')],
  ['TypeError', 'local', () => new TypeError("Cannot read properties of undefined (reading 'nodeId')")],
];

/** error as kafkajs's retrier hands it on: as thrown (bail), or after its retries (none here) ran out. */
async function wrapped(error: Error, retried: number): Promise<Error> {
  let e = error;
  for (let i = 0; i < retried; i++) {
    const thrown = e;
    e = await createRetry({ retries: 0, initialRetryTime: 1 })(() => Promise.reject(thrown)).then(
      () => {
        throw new Error('resolved');
      },
      (err: Error) => err,
    );
  }
  return e;
}

it('asks again through every no-answer error kafkajs wraps, and settles on an answer or an error of this side', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({ root: fc.constantFrom(...roots.filter(([, k]) => k === 'unanswered')), retried: fc.nat(2) }),
        {
          maxLength: 4,
        },
      ),
      // A refusal is the EndTxn's answer, which kafkajs throws as it is (no retrier around the EndTxn); wrapped, a
      // protocol error is the coordinator lookup's (no answer: see the last test of this file).
      fc
        .record({ root: fc.constantFrom(...roots.filter(([, k]) => k !== 'unanswered')), retried: fc.nat(2) })
        .map((r) => (r.root[1] === 'refused' ? { ...r, retried: 0 } : r)),
      async (unanswered, last) => {
        const errors = await Promise.all(
          [...unanswered, last].map(async ({ root: [, , make], retried }) => wrapped(make(), retried)),
        );
        let asked = 0;
        const t = {
          commit: async () => {
            throw errors[asked++] ?? new Error('asked past the answer');
          },
        };
        const settled = await commitSettled(t, 'id', undefined, { settleMs: 60_000, firstPauseMs: 1 }).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(asked).toBe(errors.length);
        expect(settled).toBe(errors[errors.length - 1]);
      },
    ),
    { numRuns: 60 },
  );
});

/**
 * A re-ask refused as fenced (INVALID_PRODUCER_EPOCH) says nothing about the transaction (a fence that came after an
 * earlier ask's EndTxn waited for its commit): the records are read back, and the send settles as read (unknown:
 * rejects). The first ask's fencing refusal is exact (the fence came first and aborted it): nothing is read back.
 */
it('reads a re-ask refused as fenced back, and settles as read; a first ask refused so is settled as aborted', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.nat(3),
      fc.constantFrom<'committed' | 'aborted' | undefined | 'fails'>('committed', 'aborted', undefined, 'fails'),
      async (unanswered, read) => {
        const fenced = createErrorFromCode(47);
        const errors = [...Array.from({ length: unanswered }, () => roots[0][2]()), fenced];
        let asked = 0;
        let readBacks = 0;
        const settled = await commitSettled(
          {
            commit: async () => {
              throw errors[asked++] ?? new Error('asked past the answer');
            },
          },
          'id',
          undefined,
          {
            settleMs: 60_000,
            firstPauseMs: 1,
            readBack: async () => {
              readBacks++;
              if (read === 'fails') throw new Error('read back timed out');
              return read;
            },
          },
        ).then(
          () => 'committed',
          (err: unknown) => err,
        );
        expect(asked).toBe(errors.length);
        expect(readBacks).toBe(unanswered > 0 ? 1 : 0);
        expect(settled).toBe(unanswered > 0 && read === 'committed' ? 'committed' : fenced);
      },
    ),
    { numRuns: 40 },
  );
});

it('counts its time from the first ask’s failure: a first ask that took longer is still asked again', async () => {
  let asked = 0;
  const slow = {
    commit: async () => {
      asked++;
      if (asked > 1) return;
      // The first EndTxn waited out its request timeout (at a frozen broker), longer than settleMs.
      await new Promise((resolve) => setTimeout(resolve, 150));
      throw failure('timeout');
    },
  };
  await expect(commitSettled(slow, 'id', undefined, { settleMs: 100, firstPauseMs: 5 })).resolves.toBeUndefined();
  expect(asked).toBe(2);
});

it('takes a protocol error found only wrapped by a retrier for the coordinator lookup giving up: no answer', async () => {
  for (const [name, kind, make] of roots.filter(([, k]) => k === 'refused')) {
    expect([name, commitErrorKind(make())]).toEqual([name, kind]);
    const lookup = await wrapped(make(), 1);
    expect(lookup.name).toMatch(/^KafkaJS(NonRetriableError|NumberOfRetriesExceeded)$/);
    expect([name, commitErrorKind(lookup)]).toEqual([name, 'unanswered']);
  }
});
