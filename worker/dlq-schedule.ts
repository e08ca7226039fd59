import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Config } from '../shared/config';
import type { Logger } from '../shared/logger';
import { dlqRetryWorkflow } from '../workflows';
import { replaySearchAttributes } from '../workflows/search-attributes';

/**
 * Creates the DLQ retry Schedule, or brings an existing one to the configured interval. Idempotent: every worker
 * start calls it; an operator's pause is kept.
 */
export async function ensureDlqRetrySchedule(
  client: Client,
  config: Pick<Config, 'temporal' | 'dlqRetry'>,
  log: Logger,
) {
  const scheduleId = config.dlqRetry.scheduleId;
  const handle = client.schedule.getHandle(scheduleId);
  const action = {
    type: 'startWorkflow' as const,
    workflowType: dlqRetryWorkflow,
    workflowId: 'dlq-retry-scheduled',
    taskQueue: config.temporal.taskQueue,
    args: [{ source: 'automated', limit: config.dlqRetry.batchSize * 10 }] as const,
    typedSearchAttributes: replaySearchAttributes({ kind: 'dlq_retry', source: 'automated' }),
    memo: { request: { source: 'automated', trigger: 'schedule' } },
  };
  try {
    const existing = await handle.describe();
    await handle.update((previous) => ({
      ...previous,
      spec: { intervals: [{ every: config.dlqRetry.intervalMs }] },
      action: { ...previous.action, ...action, args: [...action.args] },
    }));
    log.info({ schedule: scheduleId, paused: existing.state.paused }, 'DLQ retry schedule updated');
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    await client.schedule.create({
      scheduleId,
      spec: { intervals: [{ every: config.dlqRetry.intervalMs }] },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' },
      action: { ...action, args: [...action.args] },
      memo: { purpose: 'Retries due event_dlq entries into event_journal' },
    });
    log.info({ schedule: scheduleId, every_ms: config.dlqRetry.intervalMs }, 'DLQ retry schedule created');
  }
}
