import { createHash, randomBytes } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import {
  WorkflowIdConflictPolicy,
  WorkflowIdReusePolicy,
  type SearchAttributePair,
  type WorkflowResultType,
} from '@temporalio/common';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../shared/config';
import { httpError } from './http-error';

/** A workflow of this service: one input object, a result. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the input type is inferred per workflow below
export type OneInputWorkflow = (input: any) => Promise<unknown>;

export interface StartRequest<W extends OneInputWorkflow> {
  /** Readable id prefix: replay-event-42, replay-batch, replay-range, dlq-retry. */
  prefix: string;
  /** The workflow function itself: its name is the workflow type, and `input` is checked against its parameter. */
  workflow: W;
  input: Parameters<W>[0];
  searchAttributes: SearchAttributePair[];
}

/** A started workflow whose result() has the workflow's own result type. */
export type StartedWorkflow<W extends OneInputWorkflow> = WorkflowHandle<W> & {
  result(): Promise<WorkflowResultType<W>>;
};

/**
 * Starts a workflow for a request. With an Idempotency-Key header the workflow id is derived from the key (and the
 * caller and route), so a repeated request returns the workflow the first one started instead of a second one.
 */
export async function startForRequest<W extends OneInputWorkflow>(
  app: FastifyInstance,
  request: FastifyRequest,
  config: Pick<Config, 'temporal'>,
  start: StartRequest<W>,
): Promise<StartedWorkflow<W>> {
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
    let handle: WorkflowHandle<W>;
    try {
      // One cast, where the generic meets the SDK's conditional argument type: callers are checked by StartRequest<W>.
      handle = (await client.workflow.start<OneInputWorkflow>(start.workflow, {
        taskQueue: config.temporal.taskQueue,
        workflowId,
        args: [start.input],
        typedSearchAttributes: start.searchAttributes,
        memo: { request: start.input as Record<string, unknown>, requested_by: request.principal.subject, fingerprint },
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      })) as WorkflowHandle<W>;
    } catch (err) {
      // Same key, first workflow already finished: answer with that one.
      if (!key || !(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      handle = client.workflow.getHandle<W>(workflowId);
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
