import { curl, curlJson } from '../support/curl';
import { uniqueSuffix } from '../support/env';
import { emailSubjectHash, subjectStored } from '../support/erasure';
import { exited, untilPrinted } from '../support/ingest-process';
import { createProcessWorld, type ProcessWorld } from '../support/process-world';
import { localArchiveEnv } from '../support/sink';

/**
 * attack32 (area of 131a9c6, "a refused/failed POST /erasure start deletes the subject it stored").
 *
 * Invariant (docs/lifecycle.md erasure; README Idempotency-Key): the subject's plaintext value is stored only while an
 * erasure of it is to run (the workflow forgets it at its end); a request that starts nothing leaves nothing stored.
 * A request sent again with the same Idempotency-Key is answered with the workflow the first one started.
 *
 * Attack: POST /erasure (dry_run false, Idempotency-Key K) runs to completion (the subject forgotten). The client sends
 * the same request again with K (its first answer lost: the very case Idempotency-Key is for). The route stores the
 * subject again (storeErasureSubject, before the start), startForRequest finds K's workflow already finished
 * (WorkflowExecutionAlreadyStartedError: answered with that handle), and the route answers 202 with the finished
 * erasure. Nothing will run for it, so nothing forgets the subject: its plaintext stays in erasure_subjects.
 *
 * Observed (2 of 2 runs): first erasure completed, subject not stored after it; the resend answered 202 with the same
 * erasure_id; the subject stored again, still there 5 s later (and for ever: nothing prunes erasure_subjects).
 * Suspected cause: api/routes/erasure.ts (storeErasureSubject before startForRequest; the subject is forgotten only on
 * an error, not when the start found an existing, finished workflow).
 *
 * Fixed: the subject is claimed per workflow (sql/017_erasure_claims.sql): a refused request releases only its own
 * claim, a request answered with an erasure that has already ended releases its claim at once, and a subject goes
 * once no claim names it (repository/erasure.ts forgetErasureSubject, api/erasure-claims.ts).
 */
jest.setTimeout(180_000);

let w: ProcessWorld;
const queue = `a32-eridem-${uniqueSuffix()}`;

beforeAll(async () => {
  w = await createProcessWorld('a32eridem', queue, { SHUTDOWN_TIMEOUT: '10s' });
}, 120_000);

afterAll(async () => {
  await w?.close();
});

it('an erasure sent again with its Idempotency-Key after it completed leaves the subject stored for ever', async () => {
  const { h } = w;
  const { child: api, port } = await w.spawnApi(10_000, localArchiveEnv(h));
  const worker = w.workers.spawn();
  const value = `a32-idem-${uniqueSuffix()}@example.com`;
  const hash = await emailSubjectHash(h.pool, value);
  const stored = () => subjectStored(h.pool, hash);
  const post = () =>
    curlJson(
      'POST',
      `http://127.0.0.1:${port}/erasure`,
      { subject: { field: 'email', value }, dry_run: false },
      'attack32',
      [`Idempotency-Key: a32-${hash.slice(0, 12)}`],
    );
  try {
    await untilPrinted(api, 'Server listening at http://');
    await untilPrinted(worker, 'Temporal worker started');
    const first = await post();
    const id = first.out.match(/"erasure_id":"([^"]+)"/)?.[1];
    expect(id).toBeDefined();
    let status = '';
    for (let i = 0; i < 120 && status !== 'completed' && status !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const got = await curl([`http://127.0.0.1:${port}/erasure/${id}`]);
      status = got.out.match(/"status":"([^"]+)"/)?.[1] ?? '';
    }
    const storedAfterFirst = await stored();
    const again = await post();
    const idAgain = again.out.match(/"erasure_id":"([^"]+)"/)?.[1];
    await new Promise((r) => setTimeout(r, 5000));
    const storedAfterAgain = await stored();
    const seen = {
      first: first.out.match(/HTTP (\d+)$/)?.[1],
      status,
      storedAfterFirst,
      again: again.out.match(/HTTP (\d+)$/)?.[1],
      sameErasure: idAgain === id,
      storedAfterAgain,
    };
    console.log(JSON.stringify(seen));
    expect(seen).toEqual({
      first: '202',
      status: 'completed',
      storedAfterFirst: false,
      again: '202',
      sameErasure: true,
      storedAfterAgain: false,
    });
  } finally {
    worker.kill('SIGTERM');
    api.kill('SIGTERM');
    await Promise.race([Promise.all([exited(worker), exited(api)]), new Promise((r) => setTimeout(r, 15_000))]);
    worker.kill('SIGKILL');
    api.kill('SIGKILL');
  }
});
