import type { Client } from '@temporalio/client';
import type { Config } from '../shared/config';
import type { Logger } from '../shared/logger';
import { dlqRetryWorkflow } from '../workflows';
import { replaySearchAttributes } from '../workflows/search-attributes';
import { ensureSchedule } from './schedules';

/** The DLQ retry Schedule (created, or brought to the configured interval; an operator's pause is kept). */
export async function ensureDlqRetrySchedule(
  client: Client,
  config: Pick<Config, 'temporal' | 'dlqRetry'>,
  log: Logger,
) {
  await ensureSchedule(
    client,
    {
      scheduleId: config.dlqRetry.scheduleId,
      intervalMs: config.dlqRetry.intervalMs,
      purpose: 'Retries due event_dlq entries into event_journal',
      action: {
        type: 'startWorkflow',
        workflowType: dlqRetryWorkflow,
        // The Schedule appends the run's time; the schedule id keeps two deployments' runs apart in one namespace.
        workflowId: `dlq-retry-scheduled-${config.dlqRetry.scheduleId}`,
        taskQueue: config.temporal.taskQueue,
        args: [{ source: 'automated', limit: config.dlqRetry.batchSize * 10 }],
        typedSearchAttributes: replaySearchAttributes({ kind: 'dlq_retry', source: 'automated' }),
        memo: { request: { source: 'automated', trigger: 'schedule' } },
      },
    },
    log,
  );
}
