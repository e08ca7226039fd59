import { createHash, randomBytes } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { WorkflowIdConflictPolicy, WorkflowIdReusePolicy, type SearchAttributePair } from '@temporalio/common';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../shared/config';
import { httpError } from './http-error';

export interface StartRequest<A> {
  /** Readable id prefix: replay-event-42, replay-batch, replay-range, dlq-retry. */
  prefix: string;
  workflowType: string;
  input: A;
  searchAttributes: SearchAttributePair[];
}

/**
 * Starts a workflow for a request. With an Idempotency-Key header the workflow id is derived from the key (and the
 * caller and route), so a repeated request returns the workflow the first one started instead of a second one.
 */
export async function startForRequest<A>(
  app: FastifyInstance,
  request: FastifyRequest,
  config: Pick<Config, 'temporal'>,
  start: StartRequest<A>,
): Promise<WorkflowHandle> {
  const key = request.headers['idempotency-key'];
  if (Array.isArray(key) || (key !== undefined && (key.length === 0 || key.length > 200))) {
    throw httpError(400, 'Idempotency-Key must be one header of 1 to 200 characters');
  }
  const suffix = key
    ? `idem-${createHash('sha256').update(`${request.principal.subject}\n${request.routeOptions.url}\n${key}`).digest('hex').slice(0, 16)}`
    : randomBytes(5).toString('hex');
  const workflowId = `${start.prefix}-${suffix}`;
  // What the request asked for: a key reused for a different request is refused, never silently answered.
  const fingerprint = createHash('sha256').update(JSON.stringify(start.input)).digest('hex');
  return app.temporal.call(async (client: Client) => {
    let handle: WorkflowHandle;
    try {
      handle = await client.workflow.start(start.workflowType, {
        taskQueue: config.temporal.taskQueue,
        workflowId,
        args: [start.input],
        typedSearchAttributes: start.searchAttributes,
        memo: { request: start.input as Record<string, unknown>, requested_by: request.principal.subject, fingerprint },
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      });
    } catch (err) {
      // Same key, first workflow already finished: answer with that one.
      if (!key || !(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      handle = client.workflow.getHandle(workflowId);
    }
    if (key) {
      const { memo } = await handle.describe();
      if (memo?.fingerprint !== fingerprint) {
        throw httpError(
          422,
          `Idempotency-Key "${key}" was already used for a different request (workflow ${workflowId})`,
        );
      }
    }
    return handle;
  });
}
