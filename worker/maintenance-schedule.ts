import type { Client } from '@temporalio/client';
import type { Config } from '../shared/config';
import type { Logger } from '../shared/logger';
import { journalMaintenanceWorkflow } from '../workflows';
import { ensureSchedule } from './schedules';

/** Workflow id of the scheduled maintenance runs (the Schedule appends the run's time). */
export const SCHEDULED_MAINTENANCE_ID = 'journal-maintenance-scheduled';

/** The journal maintenance Schedule (docs/lifecycle.md): partitions ahead, retention, archive. */
export async function ensureMaintenanceSchedule(
  client: Client,
  config: Pick<Config, 'temporal' | 'journal'>,
  log: Logger,
) {
  await ensureSchedule(
    client,
    {
      scheduleId: config.journal.maintenanceScheduleId,
      intervalMs: config.journal.maintenanceIntervalMs,
      purpose: 'Journal maintenance: creates time partitions ahead, archives then drops what retention expires',
      action: {
        type: 'startWorkflow',
        workflowType: journalMaintenanceWorkflow,
        workflowId: SCHEDULED_MAINTENANCE_ID,
        taskQueue: config.temporal.taskQueue,
        args: [{ trigger: 'schedule' }],
      },
    },
    log,
  );
}
