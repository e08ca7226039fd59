import fc from 'fast-check';
import type { Operation } from 'rfc6902';

/** Generated RFC 6902 patches whose pointers come from `pointer` (each kind of operation, values of any JSON type). */
export function patchArbitrary(pointer: fc.Arbitrary<string>, maxLength: number): fc.Arbitrary<Operation[]> {
  const operation = fc.oneof(
    fc.record({ op: fc.constantFrom('add', 'replace', 'test'), path: pointer, value: fc.jsonValue({ maxDepth: 2 }) }),
    fc.record({ op: fc.constant('remove'), path: pointer }),
    fc.record({ op: fc.constantFrom('move', 'copy'), from: pointer, path: pointer }),
  ) as fc.Arbitrary<Operation>;
  return fc.array(operation, { minLength: 1, maxLength });
}
