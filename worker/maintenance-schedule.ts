import type { Client } from '@temporalio/client';
import type { Config } from '../shared/config';
import type { Logger } from '../shared/logger';
import { journalMaintenanceWorkflow } from '../workflows';
import { ensureSchedule } from './schedules';

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
        // The Schedule appends the run's time; the schedule id keeps two deployments' runs apart in one namespace.
        workflowId: `journal-maintenance-scheduled-${config.journal.maintenanceScheduleId}`,
        taskQueue: config.temporal.taskQueue,
        args: [{ trigger: 'schedule' }],
      },
    },
    log,
  );
}
