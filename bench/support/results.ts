import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, type machine } from './env';

export const RESULTS_DIR = path.join(REPO_ROOT, 'bench/results');

export interface Target {
  name: string;
  target: string;
  actual: number | string;
  met: boolean;
}

/** Writes bench/results/<name>.json: the machine, parameters, raw samples, summaries, ratios and targets. */
export function writeResult(
  name: string,
  started: ReturnType<typeof machine>,
  body: Record<string, unknown> & { targets: Target[] },
) {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  const machineInfo = { ...started, loadAverageAtEnd: os.loadavg().map((l) => Math.round(l * 100) / 100) };
  fs.writeFileSync(file, `${JSON.stringify({ benchmark: name, machine: machineInfo, ...body }, null, 2)}\n`);
  return file;
}

/** One line per target, for the console. */
export function printTargets(name: string, targets: Target[]): void {
  for (const t of targets)
    console.log(`[${name}] ${t.met ? 'MET   ' : 'MISSED'} ${t.name}: ${t.actual} (target ${t.target})`);
}
