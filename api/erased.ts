import { erasedEventMessage } from '../lifecycle/erasure-target';
import { erasuresOf } from '../repository/erasure';
import type { Queryable } from '../repository/queryable';
import { httpError } from './http-error';

/**
 * The answer for a journal id that is not there: 410 naming the erasure that deleted it, or 404. An erased row's
 * tenant is gone with it, so the 410 is the same for every caller; it tells that the id was erased, and by which
 * erasure, nothing of what it held.
 */
export async function erasedEventError(db: Queryable, id: number): Promise<Error & { statusCode: number }> {
  const erasure = (await erasuresOf(db, [id])).get(id);
  if (erasure) return httpError(410, erasedEventMessage(id, erasure));
  return httpError(404, `Event ${id} not found in event_journal`);
}
