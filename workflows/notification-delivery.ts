import { ActivityFailure, proxyActivities, sleep, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { NotificationKind } from '../journal/kinds';

/** One notification to one URL (emitters start one per URL, notifications/emit.ts). */
export interface NotificationDeliveryInput {
  /** The notification's id, sent in x-crm-notification-id: the same for every URL and attempt. */
  notificationId: string;
  kind: NotificationKind;
  url: string;
  /** The JSON body, signed and sent as is by every attempt. */
  body: string;
  maxAttempts: number;
  /** Wait before the second attempt; doubles per attempt, up to MAX_BACKOFF_MS. */
  backoffMs: number;
}

export interface NotificationDeliveryResult {
  status: 'delivered' | 'abandoned';
  delivery_id: string;
  attempts: number;
  http_status: number | null;
}

const MAX_BACKOFF_MS = 3_600_000;

/**
 * One POST per attempt (NOTIFY_TIMEOUT at most). The activity's own retries are only for recording the attempt when
 * Postgres does not answer; the receiver's failures are the workflow's attempts, spaced by durable timers.
 */
const { deliverNotification } = proxyActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
});

/**
 * Delivers one notification to one URL: up to maxAttempts attempts with exponential backoff between them, each
 * recorded in notification_deliveries; the last failure is recorded as abandoned and ends the workflow (completed,
 * status abandoned: nothing waits on it, and a failed workflow would only add noise).
 */
export async function notificationDeliveryWorkflow(
  input: NotificationDeliveryInput,
): Promise<NotificationDeliveryResult> {
  const deliveryId = workflowInfo().workflowId;
  let httpStatus: number | null = null;
  for (let attempt = 1; attempt <= input.maxAttempts; attempt++) {
    const last = attempt === input.maxAttempts;
    try {
      const result = await deliverNotification({ ...input, deliveryId, attempt, last });
      httpStatus = result.httpStatus;
      if (result.delivered)
        return { status: 'delivered', delivery_id: deliveryId, attempts: attempt, http_status: httpStatus };
    } catch (err) {
      // The attempt could not even be recorded (Postgres away for minutes): it counts as failed.
      if (!(err instanceof ActivityFailure)) throw err;
    }
    if (!last) await sleep(Math.min(input.backoffMs * 2 ** (attempt - 1), MAX_BACKOFF_MS));
  }
  return { status: 'abandoned', delivery_id: deliveryId, attempts: input.maxAttempts, http_status: httpStatus };
}
