import fc from 'fast-check';
import { LINEAGE_FIELDS, TENANT_FIELDS } from '../../journal/kinds';
import { editDocument } from '../../journal/repair';
import { applyTransform, replayTransform, transformProblem } from '../../journal/transform';
import { patchArbitrary } from '../support/json-patch';

/**
 * Generated patches against replay transforms and repairs: whatever the pointers (escapes, "-", array indexes, the
 * tokens rfc6902 skips, lineage names spelled through them) and values, a transform the check accepts never throws
 * and never yields a payload with a lineage field or another tenant; a repair never throws and never changes lineage.
 */
const NAMES = [
  'a',
  'arr',
  '-',
  '0',
  '01',
  '~0',
  '~1',
  'x~1y',
  '__proto__',
  'constructor',
  'prototype',
  ...LINEAGE_FIELDS,
];
const token = fc.oneof(fc.constantFrom(...NAMES), fc.string({ maxLength: 4 }));
const pointer = fc.oneof(
  fc.constant(''),
  fc.array(token, { minLength: 1, maxLength: 4 }).map((tokens) => `/${tokens.join('/')}`),
);
const patch = patchArbitrary(pointer, 4);
const payload = fc
  .record({ a: fc.jsonValue({ maxDepth: 2 }), arr: fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }) })
  .map((p) => ({ tenant_id: 'acme', ...p }));

it('an accepted transform never throws, and its result has no lineage field and the same tenant', () => {
  fc.assert(
    fc.property(payload, patch, (doc, ops) => {
      if (transformProblem(ops) !== undefined) return;
      const outcome = applyTransform(JSON.stringify(doc), replayTransform(ops));
      if (!outcome.ok) return;
      const after = JSON.parse(outcome.text) as Record<string, unknown>;
      expect(typeof after === 'object' && after !== null && !Array.isArray(after)).toBe(true);
      for (const field of LINEAGE_FIELDS) expect(Object.hasOwn(after, field)).toBe(false);
      for (const field of TENANT_FIELDS) expect(after[field]).toEqual((doc as Record<string, unknown>)[field]);
    }),
    { numRuns: 3000 },
  );
});

it('a repair never throws and never changes a lineage field', () => {
  fc.assert(
    fc.property(payload, patch, (doc, ops) => {
      const result = editDocument(doc, { patch: ops });
      if ('error' in result) return;
      for (const field of LINEAGE_FIELDS) expect(Object.hasOwn(result.after, field)).toBe(false);
    }),
    { numRuns: 3000 },
  );
});
