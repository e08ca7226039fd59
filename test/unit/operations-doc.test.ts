import fs from 'node:fs';
import path from 'node:path';

/**
 * docs/operations.md may not drift from bench/results/: every measured number in it is bold and followed by a link
 * naming the results file and the field (`**21,620** [ingest.json › eventsPerSecond.project.median](...)`), which
 * is read back here; every `a / b = c` (also ×, -) in it is redone; and every grouped or decimal number in its text
 * is one of those, a result, or a given listed below with its reason.
 */
const ROOT = path.join(__dirname, '../..');
const doc = fs.readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');

const NUMBER = String.raw`\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?`;
const value = (text: string) => Number(text.replace(/,/g, ''));
/** The number as the doc shows it, rounded to the digits it shows, equals `exact`. */
const shownAs = (text: string, exact: number) => {
  const decimals = text.split('.')[1]?.length ?? 0;
  return Math.abs(value(text) - exact) <= 0.5 * 10 ** -decimals + 1e-9;
};

const CITED = new RegExp(
  String.raw`\*\*(${NUMBER})\*\*[^*\[]*?\[([\w.-]+\.json) › ([\w.]+)\]\(\.\./bench/results/([\w.-]+\.json)\)`,
  'g',
);
const ARITHMETIC = new RegExp(String.raw`(${NUMBER}) ([/×-]) (${NUMBER}) = (${NUMBER})`, 'g');

/** Numbers the doc takes as given, not from a results file. */
const GIVENS: Record<string, string> = {
  '6,000,000': 'the 100× peak issue 14 names',
  '3,600': 'seconds in an hour',
  '86,400': 'seconds in a day',
  '50,000': 'the HPA target in deploy/base/hpa.yaml',
  '1.30': 'the oldest Kubernetes version validated (scripts/k8s-tools.sh)',
  '1.37': 'the newest Kubernetes version validated',
  '0.8': 'the forced-stop fraction of SHUTDOWN_TIMEOUT in worker/worker.ts',
  '2.16': '2,160,000,000 bytes/s written as GB/s',
  '5,000': 'the default of STREAM_CATCHUP_ROWS_PER_SECOND (shared/config.ts)',
};

function field(file: string, dotted: string): unknown {
  const data: unknown = JSON.parse(fs.readFileSync(path.join(ROOT, 'bench/results', file), 'utf8'));
  return dotted.split('.').reduce<unknown>((at, key) => (at as Record<string, unknown> | undefined)?.[key], data);
}

const cited = [...doc.matchAll(CITED)].map(([, shown, file, dotted, linked]) => ({ shown, file, dotted, linked }));
const sums = [...doc.matchAll(ARITHMETIC)].map(([text, a, op, b, result]) => ({ text, a, op, b, result }));

it('cites measurements from several results files', () => {
  expect(cited.length).toBeGreaterThan(20);
  expect(new Set(cited.map((c) => c.file)).size).toBeGreaterThanOrEqual(5);
});

it('every bold number is a cited measurement', () => {
  const bold = [...doc.matchAll(new RegExp(String.raw`\*\*(${NUMBER})\*\*`, 'g'))].length;
  expect(bold).toBe(cited.length);
});

it('every cited number is the value in its results file, and links to that file', () => {
  const wrong = cited.filter(({ shown, file, dotted, linked }) => {
    const actual = field(file, dotted);
    return linked !== file || typeof actual !== 'number' || !shownAs(shown, actual);
  });
  expect(wrong.map((c) => ({ ...c, actual: field(c.file, c.dotted) }))).toEqual([]);
});

it('every piece of arithmetic is right to the digits shown, on measured numbers, givens or earlier results', () => {
  expect(sums.length).toBeGreaterThan(15);
  const known = new Set([...cited.map((c) => value(c.shown)), ...Object.keys(GIVENS).map(value)]);
  // Counts written by the doc's own text: the partitions of the ingest benchmark, the RF, the payload mean, today.
  for (const small of [6, 3, 100, 500]) known.add(small);
  const problems: string[] = [];
  for (const { text, a, op, b, result } of sums) {
    const [x, y] = [value(a), value(b)];
    const exact = op === '/' ? x / y : op === '×' ? x * y : x - y;
    if (!shownAs(result, exact)) problems.push(`${text}: is ${exact}`);
    for (const operand of [a, b]) if (!known.has(value(operand))) problems.push(`${text}: where is ${operand} from?`);
    known.add(value(result));
  }
  expect(problems).toEqual([]);
});

it('every grouped or decimal number in the text is measured, computed or a listed given', () => {
  const known = new Set([
    ...cited.map((c) => c.shown),
    ...sums.flatMap((s) => [s.a, s.b, s.result]),
    ...Object.keys(GIVENS),
  ]);
  const loose = [...doc.matchAll(/(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)(?!\.\d)(?![\w.]*\])/g)]
    .map((m) => m[1])
    .filter((n) => !known.has(n));
  expect([...new Set(loose)]).toEqual([]);
});
