import { dlqGroupsSince, type DlqGroupCount } from '../repository/event-dlq';
import { emitNotification, type EmitDeps } from './emit';
import { stopWait } from '../shared/stop-clock';
import { settleWithin } from '../shared/timeout';

/** How long a stop waits for a check in progress (a query a frozen Postgres never answers would hold it). */
const STOP_TIMEOUT_MS = 5000;

/**
 * dlq_group_growing, defined simply: at least NOTIFY_DLQ_GROWTH_THRESHOLD dead letters of one reason and topic
 * received within the last NOTIFY_DLQ_GROWTH_WINDOW. Checked every NOTIFY_DLQ_GROWTH_INTERVAL; the notification's
 * key holds the window's number since the epoch (now / window), so one group is told at most once per window however
 * often it is checked and however many workers check it. Returns the groups over the threshold.
 */
export async function checkDlqGrowth(deps: EmitDeps, now = Date.now()): Promise<DlqGroupCount[]> {
  const { threshold, windowMs } = deps.config.dlqGrowth;
  const groups = await dlqGroupsSince(deps.pool, new Date(now - windowMs), threshold);
  const window = Math.floor(now / windowMs);
  for (const g of groups) {
    await emitNotification(deps, {
      kind: 'dlq_group_growing',
      key: `${g.reason}-${g.topic}-${window}`,
      data: {
        reason: g.reason,
        topic: g.topic,
        count: g.count,
        threshold,
        window_seconds: windowMs / 1000,
        oldest: g.oldest.toISOString(),
        newest: g.newest.toISOString(),
      },
    });
  }
  return groups;
}

/**
 * The worker's watch of the DLQ, outside every data path: a timer (unref'd) that checks the growth; a check that
 * fails (Postgres away) is logged and the next one runs on time. Runs only when notifications are signed.
 */
export function startDlqGrowthWatch(deps: EmitDeps, stopTimeoutMs = STOP_TIMEOUT_MS): { stop: () => Promise<void> } {
  if (!deps.config.signingSecret) return { stop: async () => undefined };
  let running: Promise<unknown> = Promise.resolve();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    running = checkDlqGrowth(deps)
      .catch((err: Error) => deps.log.warn({ err }, 'DLQ growth check failed'))
      .finally(() => {
        busy = false;
      });
  }, deps.config.dlqGrowth.intervalMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await settleWithin(running, stopWait(stopTimeoutMs));
    },
  };
}
