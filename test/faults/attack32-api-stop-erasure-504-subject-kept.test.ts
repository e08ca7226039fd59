import { CLAIM_GRACE_MS } from '../../api/erasure-claims';
import { curlJson } from '../support/curl';
import { uniqueSuffix } from '../support/env';
import { emailSubjectHash } from '../support/erasure';
import { exited, untilPrinted } from '../support/ingest-process';
import { createProcessWorld, type ProcessWorld } from '../support/process-world';
import { eventually } from '../support/sink';
import { listenerPid } from '../support/stack';

/**
 * attack32 (fix 131a9c6: "a refused erasure forgets its subject ... one whose start may have reached Temporal (504)
 * keeps it: that erasure needs it").
 *
 * Invariant (docs/integrity.md Shutdown, docs/lifecycle.md erasure): the subject's plaintext value is stored only for
 * an erasure that runs (the workflow forgets it at its end); a request that started nothing leaves nothing stored.
 *
 * Attack: Temporal frozen (SIGSTOP: a stalled frontend) while REQUESTS POST /erasure (dry_run false) are in
 * their start; SIGTERM to the API. At the end of the grace their starts are cancelled and each is answered 504 naming
 * its workflow ("may have started; look it up"); the route keeps the subject. Temporal is thawed after the API exited.
 * Then: does each workflow exist, and is each subject still stored?
 *
 * Observed (2 of 2 runs, 3 requests each): api exit 0 after 1.9-2.0 s; 3 of 3 answered 504 "The API stopped before
 * Temporal confirmed the start of workflow erasure-...": 5 s after the thaw none of the 3 workflows exists (describe:
 * not found), and 3 of 3 subjects (field and plaintext value) are still stored in erasure_subjects. Nothing will
 * delete them: forgetErasureSubject runs only in the workflow, or in the route on a refusal, and nothing prunes
 * erasure_subjects (a client that looks the workflow up, finds nothing and gives up leaves the value there for ever).
 * Suspected cause: api/routes/erasure.ts (the .catch keeps the subject on any error with a workflow_id) with no
 * later clean-up of subjects whose erasure never started.
 *
 * Fixed: the subject is claimed for its workflow (sql/017_erasure_claims.sql); each API prunes claims older than
 * CLAIM_GRACE_MS (60 s) whose workflow Temporal does not run (api/erasure-claims.ts), at start and every minute, and
 * deletes a subject once no claim names it. The check here: the next API releases the three within the grace plus a
 * prune.
 */
jest.setTimeout(300_000);

const REQUESTS = 3;
const SHUTDOWN_TIMEOUT_MS = 8000;
let w: ProcessWorld;
let frozen: number | undefined;

beforeAll(async () => {
  w = await createProcessWorld('a32er504', `a32-er504-${uniqueSuffix()}`);
}, 120_000);

afterAll(async () => {
  if (frozen) process.kill(frozen, 'SIGCONT');
  await w?.close();
});

it('POST /erasure answered 504 at a stop with Temporal frozen: no subject stored without its workflow', async () => {
  const { h, client } = w;
  const { child: api, url } = await w.spawnApi(SHUTDOWN_TIMEOUT_MS);
  const values = Array.from({ length: REQUESTS }, (_, i) => `a32-er504-${i}-${uniqueSuffix()}@example.com`);
  const hashes: string[] = [];
  for (const value of values) hashes.push(await emailSubjectHash(h.pool, value));
  const postErasure = (value: string) =>
    curlJson('POST', `${url}/erasure`, { subject: { field: 'email', value }, dry_run: false }, 'attack32');
  try {
    await untilPrinted(api, 'Server listening at http://');
    // One erasure first: the API's Temporal connection is up before the freeze (as in steady state).
    await postErasure(`warm-${uniqueSuffix()}@example.com`);
    frozen = listenerPid(h.config.temporal.address);
    process.kill(frozen, 'SIGSTOP');
    const requests = values.map((value) => postErasure(value));
    for (let i = 0; i < 100; i++) {
      const { rows } = await h.pool.query('SELECT 1 FROM erasure_subjects WHERE subject_hash = ANY($1::text[])', [
        hashes,
      ]);
      if (rows.length >= REQUESTS) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
    const signalled = Date.now();
    api.kill('SIGTERM');
    const answers = await Promise.all(requests);
    const code = await Promise.race([exited(api), new Promise((r) => setTimeout(() => r('running'), 30_000))]);
    const tookMs = Date.now() - signalled;
    process.kill(frozen, 'SIGCONT');
    frozen = undefined;
    await new Promise((r) => setTimeout(r, 5000));
    const outcomes: { exists: boolean; stored: boolean; [field: string]: unknown }[] = [];
    for (const [i, a] of answers.entries()) {
      const workflowId = a.out.match(/"workflow_id":"([^"]+)"/)?.[1];
      const exists = workflowId
        ? await client.workflow
            .getHandle(workflowId)
            .describe()
            .then(
              () => true,
              () => false,
            )
        : false;
      const { rows } = await h.pool.query('SELECT 1 FROM erasure_subjects WHERE subject_hash = $1', [hashes[i]]);
      outcomes.push({
        status: a.out.match(/HTTP (\d+)$/)?.[1],
        message: a.out.match(/"message":"([^"]*)"/)?.[1]?.slice(0, 80),
        workflowId,
        exists,
        stored: rows.length > 0,
      });
    }
    console.log(`api exit ${String(code)} after ${tookMs} ms; ${JSON.stringify(outcomes)}`);
    // Kept at the stop (the start may have reached Temporal), released by the next API's prune once its claim is older
    // than CLAIM_GRACE_MS and Temporal shows no such workflow.
    const orphans = hashes.filter((_, i) => !outcomes[i].exists);
    const { child: next } = await w.spawnApi(SHUTDOWN_TIMEOUT_MS);
    try {
      await untilPrinted(next, 'Server listening at http://');
      await eventually(
        async () =>
          (await h.pool.query('SELECT 1 FROM erasure_subjects WHERE subject_hash = ANY($1::text[])', [orphans]))
            .rowCount === 0,
        'the next API to prune the subjects of erasures that never started',
        CLAIM_GRACE_MS + 90_000,
        1000,
      );
    } finally {
      next.kill('SIGKILL');
      await exited(next);
    }
    expect(outcomes.filter((o) => o.exists)).toEqual([]);
  } finally {
    if (frozen) process.kill(frozen, 'SIGCONT');
    frozen = undefined;
    api.kill('SIGKILL');
    await exited(api);
  }
});
