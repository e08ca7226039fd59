/** Adds a page's or a chunk's refused events by topic to the running counts of a replay. */
export function addRefusedTopics(into: Record<string, number>, from: Record<string, number> | undefined): void {
  for (const [topic, events] of Object.entries(from ?? {})) into[topic] = (into[topic] ?? 0) + events;
}

/**
 * The audit row's note (its `error`) for a replay that completed but left events out because their own topic is not
 * an allowed replay target; undefined when it left none out.
 */
export function refusedTopicsNote(refused: Record<string, number>): string | undefined {
  const topics = Object.entries(refused);
  if (topics.length === 0) return undefined;
  const list = topics.map(([topic, events]) => `"${topic}" (${events})`).join(', ');
  return `events not replayed, their topic is not an allowed replay target (REPLAY_TARGET_TOPICS): ${list}`;
}
