import { ApplicationFailure, Context } from '@temporalio/activity';
import type { NotificationKind } from '../journal/kinds';
import {
  KIND_HEADER,
  NOTIFICATION_ID_HEADER,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  signNotification,
} from '../notifications/signature';
import { emitNotification, type Notification } from '../notifications/emit';
import { recordDeliveryAttempt } from '../repository/notifications';
import type { ActivityDeps } from './deps';

export interface DeliverNotificationInput {
  deliveryId: string;
  notificationId: string;
  kind: NotificationKind;
  url: string;
  body: string;
  attempt: number;
  /** The last attempt: a failure is recorded as abandoned. */
  last: boolean;
}

export interface DeliveryOutcome {
  delivered: boolean;
  httpStatus: number | null;
  error: string | null;
}

/** Longest part of a receiver's answer kept in notification_deliveries.error. */
const ERROR_CHARS = 500;

/** Posts notifications (one attempt per call) and records every attempt. */
export function createNotificationActivities({ pool, metrics, config }: ActivityDeps) {
  const { signingSecret, timeoutMs } = config.notifications;
  return {
    /**
     * One signed POST: a 2xx answer delivers it; any other answer, a timeout or a refused connection is a failed
     * attempt (returned, not thrown: the workflow decides on the next one). Redirects are not followed.
     */
    async deliverNotification(input: DeliverNotificationInput): Promise<DeliveryOutcome> {
      if (!signingSecret) {
        throw ApplicationFailure.nonRetryable('NOTIFY_SIGNING_SECRET is not set on this worker', 'InvalidRequest');
      }
      const outcome = await post(input, signingSecret, timeoutMs);
      const status = outcome.delivered ? 'delivered' : input.last ? 'abandoned' : 'failed';
      await recordDeliveryAttempt(pool, {
        deliveryId: input.deliveryId,
        kind: input.kind,
        url: input.url,
        attempt: input.attempt,
        status,
        httpStatus: outcome.httpStatus,
        error: outcome.error,
      });
      metrics.notificationDeliveries.inc({ kind: input.kind, status });
      return outcome;
    },
  };
}

/**
 * How activities emit: with the worker's own client, on the task queue the activity runs on, so the delivery runs on
 * the same workers. Returns once Temporal has the delivery (or it was counted as an error); never throws.
 */
export function activityNotifier({ pool, log, metrics, config }: ActivityDeps): (n: Notification) => Promise<void> {
  return (n) =>
    emitNotification(
      {
        client: () => Context.current().client,
        taskQueue: currentTaskQueue(),
        pool,
        log,
        metrics,
        config: config.notifications,
      },
      n,
    );
}

/** The running activity's task queue (empty outside an activity: the start then fails and is counted). */
function currentTaskQueue(): string {
  try {
    return Context.current().info.taskQueue;
  } catch {
    return '';
  }
}

async function post(input: DeliverNotificationInput, secret: string, timeoutMs: number): Promise<DeliveryOutcome> {
  const timestamp = Math.floor(Date.now() / 1000);
  try {
    const response = await fetch(input.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'crm-events-sink-notifications',
        [SIGNATURE_HEADER]: signNotification(secret, timestamp, input.body),
        [TIMESTAMP_HEADER]: String(timestamp),
        [NOTIFICATION_ID_HEADER]: input.notificationId,
        [KIND_HEADER]: input.kind,
      },
      body: input.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text().catch(() => '');
    if (response.ok) return { delivered: true, httpStatus: response.status, error: null };
    const detail = text.trim().slice(0, ERROR_CHARS);
    return {
      delivered: false,
      httpStatus: response.status,
      error: `HTTP ${response.status}${detail ? `: ${detail}` : ''}`,
    };
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const message = cause?.code ?? cause?.message ?? (err as Error).message;
    return { delivered: false, httpStatus: null, error: message.slice(0, ERROR_CHARS) };
  }
}
