import { replayTargetRule, targetRefusal } from '../journal/replay-targets';
import type { ActivityDeps } from './deps';

/**
 * A replay without a target sends each event back to the topic it was ingested from, which the API could not check
 * for a batch or a range before it started: events whose topic is not an allowed target are refused here, one by one,
 * and counted by topic. With a target (checked by the API before the workflow started) nothing is refused here.
 */
export function ownTopicCheck(
  config: ActivityDeps['config'],
  request: { targetTopic?: string; tenantScoped: boolean },
  /** Counts carried over from earlier pages of the same call (a resumed chunk). */
  counted: Record<string, number> = {},
) {
  const rule = request.targetTopic === undefined ? replayTargetRule(config, request.tenantScoped) : undefined;
  const byTopic: Record<string, number> = { ...counted };
  return {
    /** Why this event may not go back to its own topic (and counts it), or undefined when it may. */
    refusal(row: { id: number; topic: string }): string | undefined {
      const reason = rule && targetRefusal(rule, row.topic);
      if (!reason) return undefined;
      byTopic[row.topic] = (byTopic[row.topic] ?? 0) + 1;
      return `Event ${row.id}: ${reason}`;
    },
    /**
     * Counts an event an earlier attempt of its page refused for its topic (refused again, per_key): whether the topic
     * is allowed now is not asked, so that a retry under another REPLAY_TARGET_TOPICS decides as its page did.
     */
    countEarlier(row: { topic: string }): void {
      byTopic[row.topic] = (byTopic[row.topic] ?? 0) + 1;
    },
    /** The refused events by topic so far (a copy), or undefined when none was refused. */
    refusedTopics(): Record<string, number> | undefined {
      return Object.keys(byTopic).length > 0 ? { ...byTopic } : undefined;
    },
  };
}

/** `{ refusedTopics }` when there are any, else nothing: results without refusals keep their earlier shape. */
export function withRefusedTopics(refusedTopics: Record<string, number> | undefined) {
  return refusedTopics ? { refusedTopics } : {};
}
