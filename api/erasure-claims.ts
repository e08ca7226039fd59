import { WorkflowNotFoundError } from '@temporalio/common';
import type { FastifyInstance } from 'fastify';
import { releaseErasureClaims, staleErasureClaims } from '../repository/erasure';
import type { Pool } from '../shared/db';

/** A stored subject claimed for one erasure workflow, by one request or several (sql/017, 018_erasure_claims_*). */
export interface ErasureClaim {
  workflowId: string;
  subjectHash: string;
  /** The claims to release (each request's token): those seen, not one a resend made since. */
  claimIds: string[];
}

/**
 * How old a claim must be before the prune asks Temporal about it: a start still on its way (one the API cancelled
 * at a stop may still reach Temporal's frontend) has long arrived by then.
 */
export const CLAIM_GRACE_MS = 60_000;

/** How often each API instance prunes (several at once only repeat idempotent work). */
export const CLAIM_PRUNE_EVERY_MS = 60_000;

/**
 * Releases the claims given when Temporal shows their workflow is not running (ended, or never started: a 504 at a stop
 * whose start did not arrive); a claim a resend made meanwhile, its start perhaps on its way, is not among them. True when released; undefined when Temporal could not say (tried again at the next prune).
 */
export async function releaseUnlessRunning(
  app: Pick<FastifyInstance, 'temporal' | 'log'>,
  pool: Pool,
  claim: ErasureClaim,
): Promise<boolean | undefined> {
  try {
    const running = await app.temporal
      .call((client) => client.workflow.getHandle(claim.workflowId).describe())
      .then(
        (described) => described.status.name === 'RUNNING',
        (err: unknown) => {
          if (err instanceof WorkflowNotFoundError) return false;
          throw err;
        },
      );
    if (running) return false;
    await releaseErasureClaims(pool, claim.subjectHash, claim.claimIds);
    return true;
  } catch (err) {
    app.log.warn({ err, erasure_id: claim.workflowId }, 'Could not check an erasure claim; tried again later');
    return undefined;
  }
}

/**
 * Releases the claims of every workflow not running whose newest claim is older than CLAIM_GRACE_MS, and with them
 * each subject no other erasure claims: a subject's value stays stored only while an erasure that needs it may run.
 */
export async function pruneErasureClaims(
  app: Pick<FastifyInstance, 'temporal' | 'log'>,
  pool: Pool,
  graceMs = CLAIM_GRACE_MS,
): Promise<number> {
  let released = 0;
  for (const claim of await staleErasureClaims(pool, graceMs)) {
    if (await releaseUnlessRunning(app, pool, claim)) released++;
  }
  return released;
}

/** Prunes once the app is ready, then every CLAIM_PRUNE_EVERY_MS until it closes. */
export function pruneErasureClaimsWhileOpen(app: FastifyInstance, pool: Pool): void {
  const prune = () =>
    void pruneErasureClaims(app, pool).catch((err: unknown) =>
      app.log.warn({ err }, 'Could not prune erasure claims; tried again later'),
    );
  let timer: NodeJS.Timeout | undefined;
  app.addHook('onReady', async () => {
    prune();
    timer = setInterval(prune, CLAIM_PRUNE_EVERY_MS).unref();
  });
  app.addHook('onClose', async () => clearInterval(timer));
}
