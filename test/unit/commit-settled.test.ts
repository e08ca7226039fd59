import fc from 'fast-check';
import { commitSettled } from '../../shared/kafka';

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
