import * as kafkajs from 'kafkajs';
import { commitErrorKind, commitSettled } from '../../shared/kafka';

/**
 * attack43 — Invariant 1 (nothing doubled: a send rejects only if its transaction is aborted, or unknown after all
 * bounds).
 *
 * Attack: commitErrorKind (shared/kafka.ts) lets the FIRST protocol error anywhere in the chain decide, and every
 * type outside NOT_YET_ANSWERS is a refusal. But an ask's error chain can carry a protocol error that is no answer
 * about the transaction at all: the ask's coordinator lookup. kafkajs's commit finds the coordinator on every ask
 * (eosManager.commit -> cluster.findGroupCoordinator); when connecting to it fails (KafkaJSConnectionError:
 * ECONNREFUSED, the coordinator broker restarting), cluster.findBroker (cluster/index.js ~line 289) refreshes the
 * metadata of the producer's target topics, and brokerPool.refreshMetadata throws any partition error of them
 * (protocol/requests/metadata/v0/response.js parse: LEADER_NOT_AVAILABLE for a partition whose leader is offline —
 * the same outage), retried and then wrapped as KafkaJSNumberOfRetriesExceeded(cause LEADER_NOT_AVAILABLE), which
 * findGroupCoordinator bails with. No EndTxn was sent by that ask; kafkajs marks the cause retriable. commitSettled
 * reads it as the coordinator's refusal and stops asking: after an earlier ask that got no answer (and may have
 * committed, attack39), the send is fenced and rejected, and its retry publishes the page again.
 *
 * Reproduction (fakes, kafkajs's own errors and retrier): ask 1: EndTxn timed out (KafkaJSRequestTimeoutError);
 * ask 2: the lookup's metadata refresh gave up on LEADER_NOT_AVAILABLE; ask 3 would answer committed.
 * With a broker: 3 brokers, the replay topic with a partition of replication factor 1 on broker B, B also the
 * transaction coordinator of the slot's id; SIGKILL B right after it received the EndTxn (attack41's setup, killing
 * instead of resetting): the re-ask's connect is refused, its metadata refresh gets LEADER_NOT_AVAILABLE for B's
 * partition; the send rejects at once (well inside COMMIT_SETTLE_MS) although the coordinator that takes over completes the commit.
 *
 * Observed: commitErrorKind says 'refused'; commitSettled rejects after 2 asks with the lookup's error.
 * Expected: 'unanswered' (a retriable error of the lookup, not the coordinator's word), asked again, resolved.
 *
 * Suspected cause: shared/kafka.ts commitErrorKind (~line 588: `chain.find((e) => typeof e.type === 'string')`, any
 * type not in NOT_YET_ANSWERS is 'refused'); its doc assumes every protocol error in a commit's chain is the
 * coordinator's EndTxn answer.
 *
 * Fixed: commitErrorKind takes only a protocol error thrown as it is for the coordinator's answer (kafkajs sends the
 * EndTxn once per ask, with no retrier around it); one found only wrapped by a retrier is the lookup's: no answer.
 */
const { KafkaJSRequestTimeoutError } = kafkajs as unknown as Record<string, new (message: string) => Error>;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createErrorFromCode } = require('kafkajs/src/protocol/error') as {
  createErrorFromCode: (code: number) => Error & { type: string; retriable: boolean };
};
// eslint-disable-next-line @typescript-eslint/no-require-imports
const createRetry = require('kafkajs/src/retry') as (opts: object) => <T>(fn: () => Promise<T>) => Promise<T>;

/** The error the re-ask's coordinator lookup ends with: the metadata refresh's retrier gave up on a partition error. */
async function lookupGaveUp(): Promise<Error> {
  const leaderNotAvailable = createErrorFromCode(5);
  return createRetry({ retries: 0, initialRetryTime: 1 })(() => Promise.reject(leaderNotAvailable)).then(
    () => {
      throw new Error('resolved');
    },
    (err: Error) => err,
  );
}

it('asks again after a re-ask whose coordinator lookup failed on a metadata error', async () => {
  const lookup = await lookupGaveUp();
  expect(lookup.name).toBe('KafkaJSNumberOfRetriesExceeded');
  const errors = [new KafkaJSRequestTimeoutError('Request EndTxn(key: 26, version: 1) timed out'), lookup];
  let asked = 0;
  const settled = await commitSettled(
    {
      commit: async () => {
        const err = errors[asked++];
        if (err) throw err;
      },
    },
    'id',
    undefined,
    { settleMs: 60_000, firstPauseMs: 1 },
  ).then(
    () => 'committed',
    (err: Error) => `rejected after ${asked} asks: ${err.name}: ${err.message}`,
  );
  expect({ kind: commitErrorKind(lookup), settled }).toEqual({ kind: 'unanswered', settled: 'committed' });
});
