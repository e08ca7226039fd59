import type { Config } from '../shared/config';

/**
 * Where a replay may publish: the topics REPLAY_TARGET_TOPICS lists (default: the ingested KAFKA_TOPICS), and for a
 * request scoped to one tenant only the ingested topics, however wide that list. The API checks a named target (or
 * a single event's own topic) before it starts a workflow; the activities check each event's own topic when a batch
 * or a range has no target, since only then is every event's topic known.
 */
export interface ReplayTargetRule {
  topics: readonly string[];
  /** Why a topic outside `topics` is refused, for the message that names it. */
  rule: string;
}

/** The allow-list that applies to a request, tenant-scoped or not. */
export function replayTargetRule(config: Pick<Config, 'kafka' | 'replay'>, tenantScoped: boolean): ReplayTargetRule {
  return tenantScoped
    ? {
        topics: config.kafka.topics,
        rule: 'a tenant-scoped token may replay only to the ingested topics (KAFKA_TOPICS)',
      }
    : { topics: config.replay.targetTopics, rule: 'replays publish only to the topics REPLAY_TARGET_TOPICS lists' };
}

/** Why `topic` (named by `what`, e.g. `target_topic`) may not be published to, or undefined when it may. */
export function targetRefusal(rule: ReplayTargetRule, topic: string, what = 'topic'): string | undefined {
  return rule.topics.includes(topic) ? undefined : `${what} "${topic}" refused: ${rule.rule}`;
}
