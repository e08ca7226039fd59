import fc from 'fast-check';
import { applyPatch, type Operation } from 'rfc6902';
import { LINEAGE_FIELDS } from '../../journal/kinds';
import { checkRepair, editDocument } from '../../journal/repair';
import type { DlqRecord } from '../../repository/event-dlq';
import { patchArbitrary } from '../support/json-patch';

// Issue 13, point 2: the validation of a repair's edit, attacked with generated documents and patches.

const key = fc.oneof(
  fc.constantFrom('a', 'b', 'tenant_id', '__proto__', 'constructor', ...LINEAGE_FIELDS),
  fc.string(),
);
const doc = fc.dictionary(key, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 });
const pointer = fc.oneof(
  fc.array(key, { minLength: 1, maxLength: 3 }).map((parts) => `/${parts.map(escape).join('/')}`),
  fc.constantFrom('', '/', '/-', '/a/-', '/0'),
);
const patch = patchArbitrary(pointer, 5);

function escape(part: string): string {
  return part.replace(/~/g, '~0').replace(/\//g, '~1');
}

const own = (o: Record<string, unknown>, f: string) => (Object.hasOwn(o, f) ? o[f] : undefined);

it('an edit never changes the document it is given, the prototype of objects, or a lineage field', () => {
  fc.assert(
    fc.property(doc.map(fromJson), patch, (before, ops) => {
      const copy = fromJson(before);
      const result = editDocument(before, { patch: ops });
      expect(before).toEqual(copy);
      expect(Object.prototype).not.toHaveProperty('polluted');
      expect(({} as Record<string, unknown>).constructor).toBe(Object);
      if ('error' in result) return;
      expect(typeof result.after === 'object' && !Array.isArray(result.after)).toBe(true);
      for (const f of LINEAGE_FIELDS) expect(own(result.after, f)).toEqual(own(before, f));
    }),
    { numRuns: 1000 },
  );
});

it('an accepted patch is exactly the library applying every operation, all of them successfully', () => {
  fc.assert(
    fc.property(doc.map(fromJson), patch, (before, ops) => {
      // Where no pointer names an inherited member, the library on a plain copy is the reference.
      fc.pre(
        ops.every((op) => pointers(op).every((p) => p.split('/').every((part) => !(part in []) && !(part in {})))),
      );
      const result = editDocument(before, { patch: ops });
      // A JSON copy, not structuredClone: under jest that makes arrays of another realm, which the library's clone
      // turns into objects ({"": []} copied "/" to "/" became {"": {}}; a CI run's counterexample).
      const expected = fromJson(before);
      let failures: unknown[];
      try {
        failures = applyPatch(expected, ops);
      } catch {
        return expect(result).toEqual({ error: expect.any(String) });
      }
      if ('error' in result) return expect(failures.some((f) => f !== null) || result.error).toBeTruthy();
      expect(failures.every((f) => f === null)).toBe(true);
      expect(result.after).toEqual(fromJson(expected));
    }),
    { numRuns: 1000, examples: [[{ '': [] }, [{ op: 'copy', from: '/', path: '/' }]]] },
  );
});

it('any patch touching a lineage field is refused, naming it; so is a replacement value that changes one', () => {
  fc.assert(
    fc.property(
      doc.map(fromJson),
      fc.constantFrom(...LINEAGE_FIELDS),
      fc.jsonValue({ maxDepth: 1 }),
      (before, field, value) => {
        const differs = JSON.stringify(own(before, field)) !== JSON.stringify(value);
        const patched = editDocument(before, { patch: [{ op: 'add', path: `/${field}`, value }] });
        if (differs) expect(patched).toEqual({ error: expect.stringContaining(field) });
        const replaced = editDocument(before, { value: { ...before, [field]: value } });
        if (differs) expect(replaced).toEqual({ error: expect.stringContaining(field) });
      },
    ),
    { numRuns: 1000 },
  );
});

it('refuses whole-document operations, __proto__, constructor and prototype paths, and results that are not objects, with a message', () => {
  expect(editDocument({ a: 1 }, { patch: [{ op: 'replace', path: '', value: {} }] })).toEqual({
    error: expect.stringMatching(/whole document; send the new document as value/),
  });
  expect(editDocument({ a: 1 }, { patch: [{ op: 'add', path: '/__proto__/polluted', value: 1 }] })).toEqual({
    error: expect.stringMatching(/__proto__/),
  });
  // The library skips these tokens (the pointer names the parent): a move from one would nest the document in itself.
  expect(editDocument({}, { patch: [{ op: 'move', from: '/constructor', path: '/0' }] })).toEqual({
    error: expect.stringMatching(/goes through constructor/),
  });
  expect(editDocument({ a: {} }, { patch: [{ op: 'copy', from: '/a/prototype', path: '/b' }] })).toEqual({
    error: expect.stringMatching(/goes through prototype/),
  });
  expect(editDocument({ a: 1 }, { patch: [{ op: 'remove', path: '/b' }] })).toEqual({
    error: expect.stringMatching(/^Patch operation 0 \(remove \/b\) failed/),
  });
  expect(editDocument(undefined, { patch: [{ op: 'add', path: '/a', value: 1 }] })).toEqual({
    error: expect.stringMatching(/not JSON/),
  });
  expect(editDocument({ a: 1 }, { value: [1] as never })).toEqual({
    error: 'The repaired value must be a JSON object',
  });
});

it('checks the repaired record with the consumer parser, whatever value is generated', () => {
  const entry = (raw: Buffer): DlqRecord =>
    ({
      id: 5,
      topic: 'apexflow.leads.created',
      tenant_id: null,
      kafka_partition: 0,
      kafka_offset: 1,
      kafka_key: null,
      kafka_key_bytes: null,
      kafka_headers: null,
      kafka_timestamp: null,
      content_hash: Buffer.alloc(32),
      raw_bytes: raw,
      payload_text: null,
      raw_value: null,
    }) as unknown as DlqRecord;
  const ctx = { repairId: 'r-1', parse: { maxBytes: 4096, lineageKey: Buffer.from('k'.repeat(32)) } };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), doc.map(fromJson), (raw, value) => {
      const check = checkRepair(entry(Buffer.from(raw)), { value }, ctx);
      const lineageKept = LINEAGE_FIELDS.every((f) => own(value, f) === undefined);
      if (!lineageKept) return expect(check.entry).toBeUndefined();
      // It journals exactly when the value names a usable tenant and fits; its payload carries the repair lineage.
      if (check.entry) {
        const payload = JSON.parse(check.entry.payloadJson) as Record<string, unknown>;
        expect(payload).toMatchObject({ _repaired_from_dlq_id: 5, _repair_id: 'r-1' });
        expect(check.entry.contentHash).toEqual(Buffer.alloc(32));
      } else {
        expect(check.error).toEqual(expect.any(String));
      }
    }),
    { numRuns: 1000 },
  );
});

/** As a dead letter's value would be: through JSON text (own __proto__ keys, no undefined, no -0). */
function pointers(op: Operation): string[] {
  return 'from' in op ? [op.path, op.from] : [op.path];
}

function fromJson(value: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
}
