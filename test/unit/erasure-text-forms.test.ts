import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import { textForms } from '../../repository/erasure-match';

// The forms a dead letter's raw text may hold a subject's value in (repository/erasure-match.ts, the DLQ pass).

it('every escaped form of a generated value is that value once read as a JSON string', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (value) => {
      const [raw, ...escaped] = textForms(value);
      expect(raw).toBe(value);
      for (const form of escaped) expect(JSON.parse(`"${form}"`)).toBe(value);
    }),
    // A quote, a backslash or a control character beside a '/' (a raw value with '/' escaped is no JSON string).
    { numRuns: 500, examples: [['"/'], ['\\/'], ['\u0001/'], ['ü/"']] },
  );
});

it("holds what Python's json.dumps writes by default (ASCII only) and with ensure_ascii off", () => {
  const values = fc.sample(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }), 300);
  values.push('jürgen@example.com', 'Zoë/Ørsted', '名前@例え.jp', '😀 smile', 'quote " back \\ slash');
  const script =
    'import json, sys\n' +
    'for v in json.load(sys.stdin):\n' +
    '    print(json.dumps([json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1]]))\n';
  const out = execFileSync('python3', ['-c', script], { input: JSON.stringify(values), encoding: 'utf8' });
  const written = out
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as [string, string]);
  expect(written).toHaveLength(values.length);
  const missed = values.filter((value, i) => !written[i].every((text) => textForms(value).includes(text)));
  expect(missed).toEqual([]);
});
