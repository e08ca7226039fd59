import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleOptionsStartWorkflowAction,
  type Workflow,
} from '@temporalio/client';
import type { Logger } from '../shared/logger';

export interface ScheduleSpec<W extends Workflow> {
  scheduleId: string;
  intervalMs: number;
  action: ScheduleOptionsStartWorkflowAction<W>;
  /** What the schedule is for (its memo, shown in the Temporal UI). */
  purpose: string;
}

/**
 * Creates a Schedule, or brings an existing one to the configured interval and action. Idempotent: every worker
 * start calls it; an operator's pause is kept. Overlapping runs are skipped.
 */
export async function ensureSchedule<W extends Workflow>(client: Client, spec: ScheduleSpec<W>, log: Logger) {
  const handle = client.schedule.getHandle(spec.scheduleId);
  try {
    const existing = await handle.describe();
    await handle.update((previous) => ({
      ...previous,
      spec: { intervals: [{ every: spec.intervalMs }] },
      // The previous action's type and the new one's differ only in how args are typed.
      action: { ...previous.action, ...spec.action } as ScheduleOptionsStartWorkflowAction<W>,
    }));
    log.info({ schedule: spec.scheduleId, paused: existing.state.paused }, 'Schedule updated');
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    await client.schedule.create({
      scheduleId: spec.scheduleId,
      spec: { intervals: [{ every: spec.intervalMs }] },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' },
      action: spec.action,
      memo: { purpose: spec.purpose },
    });
    log.info({ schedule: spec.scheduleId, every_ms: spec.intervalMs }, 'Schedule created');
  }
}
