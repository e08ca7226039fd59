import { Type } from '@sinclair/typebox';
import { REPLAY_ORDERINGS, type ReplayOrdering } from '../journal/kinds';
import {
  MAX_TRANSFORM_OPERATIONS,
  replayTransform,
  transformProblem,
  type PatchOperation,
  type ReplayTransform,
} from '../journal/transform';
import { httpError } from './http-error';
import { StringEnum } from './schemas';

const PATCH_OPS = ['add', 'remove', 'replace', 'move', 'copy', 'test'] as const;
const Pointer = Type.String({ maxLength: 1000 });

/** The `transform` field of the replay routes: an RFC 6902 JSON Patch applied to each payload before it is sent. */
export const Transform = Type.Array(
  Type.Object(
    { op: StringEnum(PATCH_OPS), path: Pointer, from: Type.Optional(Pointer), value: Type.Optional(Type.Unknown()) },
    { additionalProperties: false },
  ),
  {
    minItems: 1,
    maxItems: MAX_TRANSFORM_OPERATIONS,
    description:
      'JSON Patch (RFC 6902) applied to each payload before it is republished, e.g. [{"op":"add","path":"/channel","value":"web"}]; lineage fields cannot be patched',
  },
);

/** A patch as the route's schema let it through (the type provider sees `op` as unknown). */
type RequestPatch = ReadonlyArray<{ op: unknown; path: string; from?: string; value?: unknown }>;

/** The `ordering` field of batch and range replays. */
export const Ordering = StringEnum(REPLAY_ORDERINGS);

/** A request's ordering, as the schema let it through (the type provider sees an enum field as unknown). */
export const orderingOf = (value: unknown) => value as ReplayOrdering | undefined;

/**
 * The transform of a request's patch (its id and the patch), or undefined without one; a 400 naming `field`, the
 * operation and the problem when the patch cannot be a replay transform.
 */
export function checkTransform(field: string, patch: RequestPatch | undefined): ReplayTransform | undefined {
  if (patch === undefined) return undefined;
  for (const [index, operation] of patch.entries()) {
    const needs =
      operation.op === 'move' || operation.op === 'copy' ? 'from' : operation.op === 'remove' ? '' : 'value';
    if (needs !== '' && !Object.hasOwn(operation, needs)) {
      throw httpError(400, `${field}/${index}: a "${operation.op}" operation needs "${needs}"`);
    }
  }
  const problem = transformProblem(patch as PatchOperation[]);
  if (problem !== undefined) throw httpError(400, `${field} cannot be applied: ${problem}`);
  return replayTransform(patch as PatchOperation[]);
}
