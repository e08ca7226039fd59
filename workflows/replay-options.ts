import type { ReplayOrdering } from '../journal/kinds';
import type { ReplayTransform } from '../activities/replay-messages';
import type { RefusedEvent } from './definitions';

/**
 * A replay's transform and ordering, as its activities take them and its audit row's filter records them; absent when
 * not asked for, so that the inputs and filters of other replays keep their shape. The API writes the audit row too:
 * one shape for both.
 */
export function replayOptions(input: { transform?: ReplayTransform; ordering?: ReplayOrdering }) {
  return {
    ...(input.transform ? { transform: input.transform } : {}),
    ...(input.ordering ? { ordering: input.ordering } : {}),
  };
}

/** The audit row's note for events the transform could not apply to (the first few, with their reasons). */
export function transformFailuresNote(failures: RefusedEvent[] | undefined): string | undefined {
  if (!failures?.length) return undefined;
  return `events the transform did not apply to (first ${failures.length}): ${failures.map((f) => f.reason).join('; ')}`;
}

/** Notes joined for the audit row's `error` column, or undefined when there are none. */
export function joinNotes(...notes: Array<string | undefined>): string | undefined {
  const present = notes.filter((note): note is string => note !== undefined);
  return present.length > 0 ? present.join('; ') : undefined;
}

/** Most transform failures a replay keeps with their reasons (the rest are counted in `failed`). */
export const TRANSFORM_FAILURES_KEPT = 20;

/** The transform failures kept so far with these added, at most TRANSFORM_FAILURES_KEPT; undefined while none. */
export function keptFailures(kept: RefusedEvent[] | undefined, added: RefusedEvent[] = []): RefusedEvent[] | undefined {
  if (!kept?.length && added.length === 0) return kept;
  return [...(kept ?? []), ...added].slice(0, TRANSFORM_FAILURES_KEPT);
}
