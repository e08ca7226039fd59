import { createHash } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { WorkflowIdReusePolicy } from '@temporalio/common';
import type { NotificationKind } from '../journal/kinds';
import { endpointUrls } from '../repository/notifications';
import type { Queryable } from '../repository/queryable';
import type { NotificationsConfig } from '../shared/config';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { withTimeout } from '../shared/timeout';
import { notificationDeliveryWorkflow } from '../workflows/notification-delivery';

/** What an emitter needs: a Temporal client and the task queue of the delivery workflows, the URLs, the secret. */
export interface EmitDeps {
  client: () => Client;
  taskQueue: string;
  pool: Queryable;
  log: Logger;
  metrics: Metrics;
  config: NotificationsConfig;
}

/** Something worth telling operators. */
export interface Notification {
  kind: NotificationKind;
  /**
   * What it is about, unique per kind (a replay's workflow id, a dead letter's id and attempt): the same notification
   * emitted twice (an activity retried) starts no second delivery.
   */
  key: string;
  data: Record<string, unknown>;
}

/** The JSON every URL receives. */
export interface NotificationBody {
  id: string;
  kind: NotificationKind;
  created_at: string;
  data: Record<string, unknown>;
}

/** Longest wait for Temporal to accept one start; past it the notification is counted as an error and dropped. */
const START_TIMEOUT_MS = 5000;

/**
 * Starts one delivery workflow per URL of the notification's kind, by function reference, under a deterministic
 * workflow id (REJECT_DUPLICATE: the same notification is delivered once even when emitted again), and does not wait
 * for it. Never throws: a notification that cannot be started is logged and counted
 * (crm_events_notification_emit_errors_total), and whatever emitted it goes on.
 */
export async function emitNotification(deps: EmitDeps, n: Notification): Promise<void> {
  if (!deps.config.signingSecret) return;
  const id = `${n.kind}:${n.key}`;
  try {
    const urls = await endpointUrls(deps.pool, n.kind, deps.config.urls);
    if (urls.length === 0) return;
    const body: NotificationBody = { id, kind: n.kind, created_at: new Date().toISOString(), data: n.data };
    const text = JSON.stringify(body);
    const client = deps.client();
    await Promise.all(
      urls.map(async (url) => {
        try {
          await withTimeout(
            client.workflow.start(notificationDeliveryWorkflow, {
              taskQueue: deps.taskQueue,
              workflowId: deliveryWorkflowId(id, url),
              workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
              args: [
                {
                  notificationId: id,
                  kind: n.kind,
                  url,
                  body: text,
                  maxAttempts: deps.config.maxAttempts,
                  backoffMs: deps.config.backoffMs,
                },
              ],
            }),
            START_TIMEOUT_MS,
            `Temporal did not accept the start within ${START_TIMEOUT_MS} ms`,
          );
          deps.metrics.notificationsStarted.inc({ kind: n.kind, result: 'started' });
        } catch (err) {
          if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
          deps.metrics.notificationsStarted.inc({ kind: n.kind, result: 'duplicate' });
        }
      }),
    );
  } catch (err) {
    deps.metrics.notificationEmitErrors.inc({ kind: n.kind });
    deps.log.warn({ err, notification: id }, 'Notification not started (the operation it reports went on)');
  }
}

/** notify-<kind>-<key>-<hash of the URL>: one workflow per notification and URL, readable in the Temporal UI. */
export function deliveryWorkflowId(notificationId: string, url: string): string {
  const urlHash = createHash('sha256').update(url).digest('hex').slice(0, 10);
  return `notify-${notificationId.replace(':', '-')}-${urlHash}`;
}
