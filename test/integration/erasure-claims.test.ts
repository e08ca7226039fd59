import { WorkflowNotFoundError } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { pruneErasureClaims, releaseUnlessRunning } from '../../api/erasure-claims';
import type { ErasureTarget } from '../../lifecycle/erasure-target';
import {
  forgetErasureSubject,
  releaseErasureClaims,
  staleErasureClaims,
  storeErasureSubject,
} from '../../repository/erasure';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * Erasure subjects claimed per request, for a workflow (sql/017 and 018_erasure_claims_per_request.sql,
 * repository/erasure.ts, api/erasure-claims.ts): the value stays while an erasure that needs it may run, and goes once
 * none can. On real Postgres; Temporal's answers to the prune are given by a stand-in.
 */
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
const target: ErasureTarget = { kind: 'subject', field: 'email', value: 'claims@example.com' };

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'erasure_claims');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
});

afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** An app whose Temporal describes each workflow as `status` says (or does not know it). */
function temporalSaying(status: (id: string) => 'RUNNING' | 'COMPLETED' | 'not found'): FastifyInstance {
  const client = {
    workflow: {
      getHandle: (id: string) => ({
        describe: async () => {
          const said = status(id);
          if (said === 'not found') throw new WorkflowNotFoundError('not found', id, undefined);
          return { status: { name: said } };
        },
      }),
    },
  } as unknown as Client;
  return {
    temporal: { call: <T>(fn: (c: Client) => Promise<T>) => fn(client), close: async () => {} },
    log: createLogger('silent'),
  } as unknown as FastifyInstance;
}

const stored = async (hash: string) =>
  (await pool.query('SELECT 1 FROM erasure_subjects WHERE subject_hash = $1', [hash])).rowCount === 1;

it('a request storing the subject while an ended erasure forgets it keeps it: the new claim is seen', async () => {
  const hash = `race-${Date.now()}`;
  await storeErasureSubject(pool, hash, target, 'erasure-ended');
  // A new request's store, not yet committed when the ended erasure forgets the subject.
  const storing = await pool.connect();
  try {
    await storing.query('BEGIN');
    await storeErasureSubject(storing, hash, target, 'erasure-new');
    const forgetting = forgetErasureSubject(pool, hash, 'erasure-ended');
    await new Promise((r) => setTimeout(r, 300)); // the forget waits on the subject's row
    await storing.query('COMMIT');
    await forgetting;
  } finally {
    storing.release();
  }
  // Before: the forget's check ran on a snapshot older than the new claim and deleted the value it needs.
  expect(await stored(hash)).toBe(true);
  await forgetErasureSubject(pool, hash, 'erasure-new');
  expect(await stored(hash)).toBe(false);
});

it('a resend naming a claimed workflow has a claim of its own: the first, refused, releases only its own', async () => {
  const hash = `resend-${Date.now()}`;
  const first = await storeErasureSubject(pool, hash, target, 'erasure-resent');
  await pool.query(`UPDATE erasure_subject_claims SET created_at = now() - interval '1 hour' WHERE workflow_id = $1`, [
    'erasure-resent',
  ]);
  const resend = await storeErasureSubject(pool, hash, target, 'erasure-resent');
  expect({ first: typeof first, resend: typeof resend, same: first === resend }).toEqual({
    first: 'string',
    resend: 'string',
    same: false,
  });
  // The workflow's newest claim is young: the prune leaves it (the resend's start may still be on its way).
  expect((await staleErasureClaims(pool, 60_000)).map((c) => c.workflowId)).not.toContain('erasure-resent');
  // Before (one claim per workflow): the first's release took the resend's claim, and the subject, with it.
  await releaseErasureClaims(pool, hash, [first!]);
  expect(await stored(hash)).toBe(true);
  await releaseErasureClaims(pool, hash, [resend!]);
  expect(await stored(hash)).toBe(false);
});

it("a workflow's end releases every request's claim on it, and the subject once no other erasure claims it", async () => {
  const hash = `ended-all-${Date.now()}`;
  await storeErasureSubject(pool, hash, target, 'erasure-twice');
  await storeErasureSubject(pool, hash, target, 'erasure-twice');
  const other = await storeErasureSubject(pool, hash, target, 'erasure-other');
  await forgetErasureSubject(pool, hash, 'erasure-twice');
  expect(await stored(hash)).toBe(true);
  await releaseErasureClaims(pool, hash, [other!]);
  expect(await stored(hash)).toBe(false);
});

it('the prune releases old claims of workflows Temporal does not run, keeps running and young ones', async () => {
  const suffix = Date.now();
  const claims = {
    running: `run-${suffix}`,
    gone: `gone-${suffix}`,
    ended: `ended-${suffix}`,
    young: `young-${suffix}`,
  };
  for (const id of Object.values(claims)) await storeErasureSubject(pool, `${id}-hash`, target, id);
  await pool.query(
    `UPDATE erasure_subject_claims SET created_at = now() - interval '5 minutes' WHERE workflow_id = ANY($1::text[])`,
    [[claims.running, claims.gone, claims.ended]],
  );
  const asked: string[] = [];
  const app = temporalSaying((id) => {
    asked.push(id);
    return id === claims.gone ? 'not found' : id === claims.running ? 'RUNNING' : 'COMPLETED';
  });
  expect(await pruneErasureClaims(app, pool)).toBe(2);
  expect(asked.sort()).toEqual([claims.ended, claims.gone, claims.running].sort());
  const left = Object.fromEntries(
    await Promise.all(Object.entries(claims).map(async ([k, id]) => [k, await stored(`${id}-hash`)] as const)),
  );
  expect(left).toEqual({ running: true, gone: false, ended: false, young: true });
});

// Review of 284a4fe: the prune released every claim of a workflow it found stale and not running, a resend's fresh
// claim included (its start still on its way): the subject was deleted and the erasure, once started, failed.
it('the prune releases only the claims it saw: a resend claiming the workflow since keeps the subject', async () => {
  const [workflowId, hash] = [`resent-late-${Date.now()}`, `resent-late-${Date.now()}-hash`];
  await storeErasureSubject(pool, hash, target, workflowId);
  await pool.query(
    `UPDATE erasure_subject_claims SET created_at = now() - interval '5 minutes' WHERE workflow_id = $1`,
    [workflowId],
  );
  const [seen] = (await staleErasureClaims(pool, 60_000)).filter((c) => c.workflowId === workflowId);
  // The resend claims the workflow after the prune looked; its start has not reached Temporal yet.
  const resend = await storeErasureSubject(pool, hash, target, workflowId);
  expect(
    await releaseUnlessRunning(
      temporalSaying(() => 'not found'),
      pool,
      seen,
    ),
  ).toBe(true);
  const { rows } = await pool.query('SELECT claim_id::text FROM erasure_subject_claims WHERE workflow_id = $1', [
    workflowId,
  ]);
  expect({ stored: await stored(hash), claims: rows.map((r) => r.claim_id) }).toEqual({
    stored: true,
    claims: [resend],
  });
});
