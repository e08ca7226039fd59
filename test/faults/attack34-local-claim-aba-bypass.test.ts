/**
 * attack34 against f1659a1 + fd242d2 (archive/local-store.ts, replaceIfVersion's claims).
 *
 * Attack: a contender B passes over a dead holder's claim (attempt 1) and waits on a live holder's (attempt 2), keeping
 * its attempt number. The live holder switches the object and dies; a later refused contender removes every claim on
 * the version (removeClaims: the version is no longer current). The object then returns to the old bytes (ABA: the
 * version is a sha256 of the content). A new holder C links attempt 1 and is between its compare and its rename.
 * B wakes, links attempt 2 (it never looks at attempt 1 again), compares the same version and replaces the object.
 *
 * Invariants: no live holder's claim is ever bypassed; at most one successful replace per version.
 * Observed on main: B's replace succeeds ('switched', the object is B's) while C, alive, holds attempt 1 of the very
 * version B compared, and B's finally then removes C's live claim ('removed'); C's rename would follow, so two
 * replaces of one version go through (the second overwriting the first).
 * Fixed: a holder removes only its own claim, and no one removes a recent claim or one on the version in force (dead
 * holders' claims are collected an hour old, on versions no longer in force): a lower attempt is never claimed again
 * while a higher one may be held, so C's claim is the next attempt, which B reaches and waits on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalStore } from '../../archive/local-store';
import type { ArchiveStore } from '../../archive/store';

const REPO = path.resolve(__dirname, '../..');
const CONTENDER = `
const { createLocalStore } = require(${JSON.stringify(path.join(REPO, 'dist/archive/local-store.js'))});
const [dir, key, version] = process.argv.slice(1);
createLocalStore(dir).replaceIfVersion(key, Buffer.from('{"by":"B"}'), version).then(
  () => console.log('switched'),
  (err) => console.log(err.name),
);
`;

async function startTime(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
let store: ArchiveStore;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'attack34-aba-'));
  store = createLocalStore(dir);
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

/** A live process to name as a claim's holder (a holder frozen between its compare and its rename). */
async function liveHolder(): Promise<ChildProcess> {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  children.push(child);
  await new Promise((r) => child.once('spawn', r));
  return child;
}

it("a contender that passed over a dead claim never bypasses a live holder's claim on the same version", async () => {
  const key = 'seg/manifest.json';
  const v1 = Buffer.from('{"manifest":"v1"}');
  await store.put(key, v1);
  const version = sha256(v1);
  const claim = (attempt: number) => path.join(dir, 'seg', `.manifest.json.claim-${version}-${attempt}`);

  // Attempt 1: a holder killed after its link. Attempt 2: a live holder A (between its compare and its rename).
  const dead = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => dead.once('exit', r));
  await writeFile(claim(1), `${dead.pid} ${'1'} deadtoken`);
  const a = await liveHolder();
  await writeFile(claim(2), `${a.pid} ${await startTime(a.pid!)} holderA`);

  // B: passes over attempt 1, waits on A's attempt 2. Descheduled (SIGSTOP) while it waits.
  const b = spawn(process.execPath, ['-e', CONTENDER, dir, key, version], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(b);
  let bOut = '';
  b.stdout!.on('data', (d) => (bOut += d));
  await sleep(1_500);
  expect(bOut).toBe(''); // still waiting on A
  b.kill('SIGSTOP');

  // A renames its body in and dies before removing its claim.
  await store.put(key, Buffer.from('{"manifest":"by A"}'));
  a.kill('SIGKILL');
  await new Promise((r) => a.once('exit', r));
  // A late contender X of the old version: passes both dead claims and is refused. Before the fix it removed every
  // claim on the version; now the dead holders' claims stay (recent, and the version's bytes may come back).
  await expect(store.replaceIfVersion(key, Buffer.from('{"by":"X"}'), version)).rejects.toThrow(
    expect.objectContaining({ name: 'ArchiveObjectChangedError' }),
  );
  expect(
    (await readdir(path.join(dir, 'seg'))).filter((f) => f.includes('.claim-') && !f.endsWith('.tmp')).sort(),
  ).toEqual([path.basename(claim(1)), path.basename(claim(2))]);
  // The object returns to the old bytes (a conditional replace of A's version).
  await store.replaceIfVersion(key, v1, sha256(Buffer.from('{"manifest":"by A"}')));
  expect((await store.readVersioned(key, 1024))!.version).toBe(version);

  // C claims the version again: the first free attempt (3, past the two dead ones; attempt 1 before the fix), and is
  // between its compare and its rename (alive).
  const c = await liveHolder();
  const cAttempt = claim(3);
  await writeFile(cAttempt, `${c.pid} ${await startTime(c.pid!)} holderC`);

  // B resumes. Its claim loop is at attempt 2: it must still wait for C (the live holder of this version).
  b.kill('SIGCONT');
  await sleep(1_500);
  const bySomeone = (await readFile(path.join(dir, 'seg', 'manifest.json'), 'utf8')).trim();
  const cClaim = await readFile(cAttempt, 'utf8').catch(() => 'removed');
  expect({ b: bOut.trim(), object: bySomeone, cClaim }).toEqual({
    b: '',
    object: '{"manifest":"v1"}',
    cClaim: expect.stringContaining('holderC'),
  });
}, 30_000);
