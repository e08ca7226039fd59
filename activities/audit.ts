import { finishAudit, startAudit, type AuditFinish, type AuditStart } from '../repository/replay-audit';
import type { ActivityDeps } from './deps';

/** Audit records for every replay and DLQ retry, and the workflow metrics that go with them. */
export function createAuditActivities({ pool, metrics }: ActivityDeps) {
  return {
    async recordReplayStarted(input: AuditStart): Promise<void> {
      await startAudit(pool, input);
    },
    async recordReplayFinished(input: AuditFinish): Promise<void> {
      const row = await finishAudit(pool, input);
      if (!row) return;
      metrics.replayWorkflows.inc({ kind: row.kind, status: input.status });
      metrics.replayDuration.observe({ kind: row.kind }, row.seconds);
    },
  };
}
