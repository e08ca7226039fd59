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
import { outcomeUnknown } from './plugins/temporal';

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
  /** Runs once the workflow's id is decided, before its start is sent (what the workflow needs, stored under its id). */
  beforeStart?: (workflowId: string) => Promise<void>;
}

/** A started workflow whose result() has the workflow's own result type. */
export type StartedWorkflow<W extends OneInputWorkflow> = WorkflowHandle<W> & {
  result(): Promise<WorkflowResultType<W>>;
};

/**
 * Starts a workflow for a request. With an Idempotency-Key header the (caller, route, key) is recorded in Postgres
 * with the workflow id it starts, so a repeated request, on this instance or any other, returns the workflow the first
 * one started instead of a second one. Keys are remembered for API_IDEMPOTENCY_KEY_TTL_SECONDS.
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
  // What the request asked for: a key reused for a different request is refused, never silently answered.
  const fingerprint = createHash('sha256').update(JSON.stringify(start.input)).digest('hex');
  let workflowId = `${start.prefix}-${randomBytes(5).toString('hex')}`;
  if (key) {
    const keyHash = createHash('sha256')
      .update(`${request.principal.subject}\n${request.routeOptions.url}\n${key}`)
      .digest('hex');
    // A random tail as well: once the key is pruned, reusing it starts a new workflow rather than colliding with
    // the old one's id.
    const candidate = `${start.prefix}-idem-${keyHash.slice(0, 16)}-${randomBytes(4).toString('hex')}`;
    const recorded = await app.idempotencyKeys.claim(keyHash, candidate, fingerprint);
    if (recorded.fingerprint !== fingerprint) {
      throw httpError(
        422,
        `Idempotency-Key "${key}" was already used for a different request (workflow ${recorded.workflowId})`,
      );
    }
    workflowId = recorded.workflowId;
  }
  await start.beforeStart?.(workflowId);
  return app.temporal.call(async (client: Client) => {
    // A request the app's close gave up on starts nothing. A start already on its way is cancelled; Temporal may
    // have received it, so the answer names the workflow to look up rather than saying it was not started.
    const abandoned = app.requestsAbandoned;
    if (abandoned.aborted) throw httpError(503, 'The API is stopping: the workflow was not started; send it again');
    request.startingWorkflowId = workflowId;
    // The start's own signal, aborted with the API's: the Temporal client hangs a listener on the signal it is given
    // for each call and never takes it off, so on the API's one signal they would pile up with every request.
    const cancel = new AbortController();
    const onAbandoned = () => cancel.abort(abandoned.reason);
    abandoned.addEventListener('abort', onAbandoned, { once: true });
    try {
      // One cast, where the generic meets the SDK's conditional argument type: callers are checked by StartRequest<W>.
      // USE_EXISTING: requests racing with one key (or a retry after a start that failed) all land on one workflow.
      return (await client.connection.withAbortSignal(cancel.signal, () =>
        client.workflow.start<OneInputWorkflow>(start.workflow, {
          taskQueue: config.temporal.taskQueue,
          workflowId,
          args: [start.input],
          typedSearchAttributes: start.searchAttributes,
          memo: {
            request: start.input as Record<string, unknown>,
            requested_by: request.principal.subject,
            fingerprint,
          },
          workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
          workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
        }),
      )) as StartedWorkflow<W>;
    } catch (err) {
      // Sent, and no answer from Temporal (cancelled at a stop, timed out, the link cut and not made again): it may
      // have started it all the same.
      if (abandoned.aborted || outcomeUnknown(err)) throw unconfirmedStart(workflowId);
      // Same key, first workflow already finished: answer with that one.
      if (!key || !(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      return client.workflow.getHandle<W>(workflowId) as StartedWorkflow<W>;
    } finally {
      abandoned.removeEventListener('abort', onAbandoned);
    }
  });
}

/**
 * Whether the request's workflow start was sent to Temporal (startForRequest): from then on a workflow may exist
 * whatever the answer, and what it needs (its rate slot, an erasure's claim on its subject) is kept. The one owner of
 * that notion: the rate limit (answerSaysNothingStarted) and the erasure route ask it, and the answer at close names
 * the workflow it records.
 */
export function startWasSent(request: FastifyRequest): boolean {
  return request.startingWorkflowId !== undefined;
}

/**
 * Whether a request's answer (its status code) says it started nothing and to send it again: a 503 before its start
 * was sent (startForRequest's "not started", the close's "not handled", Temporal unreachable at connect). Once a start
 * was sent a workflow may exist whatever the answer (a failure with no answer from Temporal is a 504 naming it); a 504
 * says something may have happened; another server error is the request's own failure (a statement timeout in costly
 * work), counted like any other.
 */
export function answerSaysNothingStarted(request: FastifyRequest, statusCode: number): boolean {
  return statusCode === 503 && !startWasSent(request);
}

/**
 * The answer to a request whose start was sent and not answered by Temporal (cancelled on its way because the API
 * stopped, timed out, its link cut): Temporal may have started the workflow. A 504 (its answer did not come in time) naming it, so that the client looks it up before
 * sending the request again, which without an Idempotency-Key would start a second one.
 */
function unconfirmedStart(workflowId: string): Error {
  return httpError(504, unconfirmedStartMessage(workflowId), { workflow_id: workflowId });
}

/**
 * What a client whose workflow's start Temporal did not confirm (the API stopped, the call timed out, the link to
 * Temporal was cut) is told.
 */
export function unconfirmedStartMessage(workflowId: string): string {
  return (
    `Temporal did not confirm the start of workflow ${workflowId} (the API stopped, the call timed out, or the link ` +
    'to Temporal was cut): ' +
    'it may have started; look it up before sending the request again (with the same Idempotency-Key, sending it ' +
    'again finds it)'
  );
}
