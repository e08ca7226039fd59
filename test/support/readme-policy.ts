import fs from 'node:fs';
import path from 'node:path';

/** The README's "Who can do what" table as cells (header first), read between its route-policy markers. */
export function readmePolicyTable(): string[][] {
  const readme = fs.readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
  const start = readme.indexOf('<!-- route-policy:start -->');
  const end = readme.indexOf('<!-- route-policy:end -->');
  if (start < 0 || end < start) throw new Error('README.md has no route-policy table markers');
  return readme
    .slice(start, end)
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|[\s|-]+\|$/.test(line))
    .map((line) =>
      line
        .slice(1, -1)
        .split('|')
        .map((cell) => cell.trim()),
    );
}
