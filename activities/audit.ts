import { finishAudit, startAudit, type AuditFinish, type AuditStart } from '../repository/replay-audit';
import type { ActivityDeps } from './deps';
import { activityNotifier } from './notification';

/** Audit records for every replay and DLQ retry, and the workflow metrics and notifications that go with them. */
export function createAuditActivities(deps: ActivityDeps) {
  const { pool, metrics } = deps;
  const notify = activityNotifier(deps);
  return {
    async recordReplayStarted(input: AuditStart): Promise<void> {
      await startAudit(pool, input);
    },
    async recordReplayFinished(input: AuditFinish): Promise<void> {
      const row = await finishAudit(pool, input);
      if (!row) return;
      metrics.replayWorkflows.inc({ kind: row.kind, status: input.status });
      metrics.replayDuration.observe({ kind: row.kind }, row.seconds);
      // Operators hear of replays they asked for: not of scheduled DLQ retry runs, dry runs or cancellations.
      if (row.kind === 'dlq_retry' || row.dry_run || input.status === 'cancelled') return;
      await notify({
        kind: input.status === 'completed' ? 'replay_completed' : 'replay_failed',
        key: input.workflowId,
        data: {
          workflow_id: input.workflowId,
          replay_kind: row.kind,
          status: input.status,
          source: row.source,
          requested_by: row.requested_by,
          tenant_id: row.tenant_id,
          matched: input.matched,
          published: input.published,
          failed: input.failed,
          error: input.error ?? null,
          seconds: row.seconds,
        },
      });
    },
  };
}
