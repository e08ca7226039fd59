import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLocalStore } from '../../archive';

/**
 * The local store's put writes a temp file beside its target (archive/local-store.ts). A writer killed mid-put leaves
 * it, with the rows it had written (a rewritten segment's: other subjects', kept by no manifest, outside every later
 * erasure pass).
 * Invariant: a temp file whose writer is gone does not outlive the next put or delete in its folder (its segment's);
 * a live writer's temp file, however long stopped, is never deleted.
 * Before (6fcbd40): the temp file of a SIGKILLed writer stayed for good.
 */
jest.setTimeout(30_000);

let dir: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'put-temps-'));
});
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

const folder = () => path.join(dir, 'segments', 's1');
const temps = async () => (await readdir(folder())).filter((name) => name.endsWith('.tmp'));

/** A writer in another process whose put never ends (its body stream stays open once some bytes were written). */
async function writerMidPut(): Promise<ChildProcess> {
  const script = `
    const { Readable } = require('node:stream');
    const { createLocalStore } = require('./dist/archive');
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(4096, 'r'));
    void createLocalStore(process.argv[1]).put('segments/s1/s1.g2-abcd.ndjson.gz', body);
    setTimeout(() => process.stdout.write('writing\\n'), 300);`;
  const child = spawn(process.execPath, ['-e', script, dir], {
    cwd: path.resolve(__dirname, '../..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('writing') && resolve());
    child.on('exit', (code) => reject(new Error(`the writer exited (${code}) before writing`)));
  });
  return child;
}

it("a killed writer's temp file goes at the next put in its folder", async () => {
  const store = createLocalStore(dir);
  const writer = await writerMidPut();
  expect(await temps()).toHaveLength(1);
  writer.kill('SIGKILL');
  await new Promise((resolve) => writer.on('exit', resolve));
  expect(await temps()).toHaveLength(1); // left by the crash
  await store.put('segments/s1/manifest.json', Buffer.from('{}'));
  expect(await temps()).toEqual([]);
});

it("a killed writer's temp file goes at the next delete in its folder (a segment withdrawn)", async () => {
  const store = createLocalStore(dir);
  await store.put('segments/s1/s1.g1.ndjson.gz', Buffer.from('rows'));
  const writer = await writerMidPut();
  writer.kill('SIGKILL');
  await new Promise((resolve) => writer.on('exit', resolve));
  await store.delete('segments/s1/s1.g1.ndjson.gz');
  expect(await temps()).toEqual([]);
});

it("a stopped (live) writer's temp file stays", async () => {
  const store = createLocalStore(dir);
  const writer = await writerMidPut();
  writer.kill('SIGSTOP');
  await store.put('segments/s1/manifest.json', Buffer.from('{}'));
  expect(await temps()).toHaveLength(1);
});

it('a temp file of an earlier version (no writer in its name) goes once an hour old; a claim note is not one', async () => {
  const store = createLocalStore(dir);
  await store.put('segments/s1/manifest.json', Buffer.from('{}'));
  const old = path.join(folder(), '.s1.g1.ndjson.gz.0123456789ab.tmp');
  const recent = path.join(folder(), '.s1.g1.ndjson.gz.ba9876543210.tmp');
  const note = path.join(folder(), `.manifest.json.claim-${'f'.repeat(64)}-0123456789ab.tmp`);
  for (const file of [old, recent, note]) await writeFile(file, 'x');
  const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
  await utimes(old, twoHoursAgo, twoHoursAgo);
  await utimes(note, twoHoursAgo, twoHoursAgo);
  await store.put('segments/s1/manifest.json', Buffer.from('{"a":1}'));
  expect((await temps()).sort()).toEqual([path.basename(note), path.basename(recent)].sort());
});
