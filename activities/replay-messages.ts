import { refusalOf, replayMessageOf, type Lineage, type LineageKey, type ReplayMessage } from '../journal/lineage';
import type { ReplayRow } from '../repository/event-journal';

/** An event that was not replayed, and why. */
export interface RefusedEvent {
  id: number;
  reason: string;
}

/** A message to send, with the journal id it replays (per-key ordering resumes by these ids). */
export interface OutgoingEvent {
  id: number;
  message: ReplayMessage;
}

/** A page of rows made ready to send: the messages, and the rows refused or that the transform could not apply to. */
export interface PreparedPage {
  outgoing: OutgoingEvent[];
  /** Hop limit, a topic that is not an allowed target. */
  refused: RefusedEvent[];
  /** The replay's transform failed on these (a `test` operation, a missing path…). */
  transformFailed: RefusedEvent[];
}

/**
 * The messages replaying these rows, in their order, for every replay kind: rows past the hop limit or refused by
 * `refusal` (the own-topic check) are left out with the reason, and so are rows the transform cannot apply to.
 */
export function preparePage(
  rows: ReplayRow[],
  lineage: Lineage,
  key: LineageKey,
  maxHops: number,
  refusal: (row: ReplayRow) => string | undefined,
): PreparedPage {
  const page: PreparedPage = { outgoing: [], refused: [], transformFailed: [] };
  for (const row of rows) {
    const reason = refusalOf(row, maxHops) ?? refusal(row);
    if (reason) {
      page.refused.push({ id: row.id, reason });
      continue;
    }
    const built = replayMessageOf(row, lineage, key);
    if (built.ok) page.outgoing.push({ id: row.id, message: built.message });
    else page.transformFailed.push({ id: row.id, reason: built.reason });
  }
  return page;
}

export type { ReplayTransform } from '../journal/transform';
