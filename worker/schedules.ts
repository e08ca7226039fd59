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
 * start calls it; an operator's pause is kept. Overlapping runs are skipped. Workers starting at the same time may
 * all find no schedule: the first one's create wins, the others update what it created.
 */
export async function ensureSchedule<W extends Workflow>(client: Client, spec: ScheduleSpec<W>, log: Logger) {
  try {
    await updateSchedule(client, spec, log);
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    try {
      await client.schedule.create({
        scheduleId: spec.scheduleId,
        spec: { intervals: [{ every: spec.intervalMs }] },
        policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' },
        action: spec.action,
        memo: { purpose: spec.purpose },
      });
      log.info({ schedule: spec.scheduleId, every_ms: spec.intervalMs }, 'Schedule created');
    } catch (createErr) {
      if ((createErr as Error).name !== 'ScheduleAlreadyRunning') throw createErr;
      await updateSchedule(client, spec, log);
    }
  }
}

/** Brings an existing schedule to the spec's interval and action; ScheduleNotFoundError when there is none. */
async function updateSchedule<W extends Workflow>(client: Client, spec: ScheduleSpec<W>, log: Logger) {
  const handle = client.schedule.getHandle(spec.scheduleId);
  const existing = await handle.describe();
  await handle.update((previous) => ({
    ...previous,
    spec: { intervals: [{ every: spec.intervalMs }] },
    // The previous action's type and the new one's differ only in how args are typed.
    action: { ...previous.action, ...spec.action } as ScheduleOptionsStartWorkflowAction<W>,
  }));
  log.info({ schedule: spec.scheduleId, paused: existing.state.paused }, 'Schedule updated');
}
