import { refusalOf, replayMessageOf, type Lineage, type LineageKey, type ReplayMessage } from '../journal/lineage';
import { REFUSAL_KINDS, type RefusalKind, type RefusedIds } from '../journal/kinds';
import type { ReplayRow } from '../repository/event-journal';
import type { ownTopicCheck } from './own-topic';

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
  /** The ids of both lists, by kind: what per_key ordering keeps with the page's progress (ids only, no reason). */
  refusedIds: RefusedIds;
}

/** The own-topic check preparePage asks (activities/own-topic.ts ownTopicCheck). */
export type TopicCheck = Pick<ReturnType<typeof ownTopicCheck>, 'refusal' | 'countEarlier'>;

/** What earlier attempts of a page decided (per_key, from its progress): the ids they sent, and those they refused. */
export interface EarlierDecisions {
  sent?: readonly number[];
  refused?: RefusedIds;
}

/**
 * The messages replaying these rows, in their order, for every replay kind: rows past the hop limit or refused by the
 * own-topic check are left out with the reason, and so are rows the transform cannot apply to. What an earlier attempt
 * of this page decided (per_key) stands, whatever this attempt's config says. Rows it refused are refused again as
 * they were: sent now, one could follow a newer event of its key that the earlier attempt sent. Their reasons are not
 * kept (they may describe a payload): each says which kind of refusal it was. Rows it sent are not asked about the hop
 * limit or the topic again (publishPage does not send them again): refused now, an event published would be reported
 * refused and counted in `failed` (test/unit/attack56-sent-then-refused-on-retry.test.ts). Their message is built, as
 * it was, from the row's payload text and the transform, which a retry does not change.
 */
export function preparePage(
  rows: ReplayRow[],
  lineage: Lineage,
  key: LineageKey,
  maxHops: number,
  topics: TopicCheck,
  earlier: EarlierDecisions = {},
): PreparedPage {
  const page: PreparedPage = { outgoing: [], refused: [], transformFailed: [], refusedIds: {} };
  const refuse = (kind: RefusalKind, id: number, reason: string) => {
    (kind === 'transform' ? page.transformFailed : page.refused).push({ id, reason });
    (page.refusedIds[kind] ??= []).push(id);
  };
  const sent = new Set(earlier.sent);
  const earlierKind = new Map(
    REFUSAL_KINDS.flatMap((kind) => (earlier.refused?.[kind] ?? []).map((id) => [id, kind] as const)),
  );
  for (const row of rows) {
    if (!sent.has(row.id)) {
      const before = earlierKind.get(row.id);
      if (before) {
        if (before === 'topic') topics.countEarlier(row);
        refuse(before, row.id, `Event ${row.id}: refused by an earlier attempt of this page (${EARLIER[before](row)})`);
        continue;
      }
      const hops = refusalOf(row, maxHops);
      const reason = hops ?? topics.refusal(row);
      if (reason) {
        refuse(hops ? 'hops' : 'topic', row.id, reason);
        continue;
      }
    }
    const built = replayMessageOf(row, lineage, key);
    if (built.ok) page.outgoing.push({ id: row.id, message: built.message });
    else refuse('transform', row.id, built.reason);
  }
  return page;
}

/** What each kind of refusal was, for the reason of an event an earlier attempt refused. */
const EARLIER: Record<RefusalKind, (row: ReplayRow) => string> = {
  hops: () => 'past the hop limit, REPLAY_MAX_HOPS',
  topic: (row) => `its topic "${row.topic}" not an allowed target then`,
  transform: () => 'the transform did not apply',
};

export type { ReplayTransform } from '../journal/transform';
