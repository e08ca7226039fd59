/**
 * attack34 against fd242d2 (archive/local-store.ts holderGone: "a claim whose holder is gone (pid not running, or
 * running with another start time) is passed over").
 *
 * Invariant: a dead holder never wedges the object for good.
 *
 * Attack: the holder was killed after its link; its pid was given since to a process of another user (a root daemon
 * on the host; the worker runs as an unprivileged user: the image's USER node). process.kill(pid, 0) then fails with
 * EPERM, and holderGone returns false from its catch without comparing the start time the claim names, so the claim
 * looks held by a live process for as long as that other process runs: every conditional replace of that version
 * waits CLAIM_WAIT_MS and fails ("still held"), and the segment's manifest can never be switched (erasures of it fail
 * on every retry).
 * Observed on main (contender as uid 65534, claim naming pid 1 with another start time):
 * 'Error: Archive object claim ... still held after 15000 ms'.
 * Fixed: a kill(pid, 0) refused with EPERM means the pid runs as another user: the start times are compared then too.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalStore } from '../../archive/local-store';

const REPO = path.resolve(__dirname, '../..');
const CONTENDER = `
const { createLocalStore } = require(${JSON.stringify(path.join(REPO, 'dist/archive/local-store.js'))});
const [dir, key, version] = process.argv.slice(1);
createLocalStore(dir).replaceIfVersion(key, Buffer.from('{"by":"contender"}'), version).then(
  () => console.log('switched'),
  (err) => console.log(String(err)),
);
`;
const NOBODY = 65534;
jest.setTimeout(60_000);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'attack34-eperm-'));
  await chmod(dir, 0o777);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An object in `folder` that the other user can replace, its version, and where its first claim goes. */
async function sharedObject(folder: string) {
  const key = `${folder}/manifest.json`;
  const v1 = Buffer.from('{"manifest":"v1"}');
  await createLocalStore(dir).put(key, v1);
  await chmod(path.join(dir, folder), 0o777);
  await chmod(path.join(dir, key), 0o666);
  const version = createHash('sha256').update(v1).digest('hex');
  return { key, version, claim: path.join(dir, folder, `.manifest.json.claim-${version}-1`) };
}

/**
 * Runs the contender as another user on the object's version: what it printed, and 'exited', or that it was still
 * running after `waitMs` (then killed).
 */
async function contend(key: string, version: string, waitMs: number): Promise<{ ended: string; out: string }> {
  const child = spawn(process.execPath, ['-e', CONTENDER, dir, key, version], {
    uid: NOBODY,
    gid: NOBODY,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  const ended = await Promise.race([
    new Promise<string>((resolve) => child.once('exit', () => resolve('exited'))),
    new Promise<string>((resolve) => setTimeout(() => resolve(`still running after ${waitMs / 1000} s`), waitMs)),
  ]);
  child.kill('SIGKILL');
  return { ended, out: out.trim() };
}

it("a claim naming a pid now run by another user's process (another start time) is passed over", async () => {
  expect(process.getuid?.()).toBe(0); // to run the contender as another user than pid 1's
  const { key, version, claim } = await sharedObject('seg');
  // The dead holder's claim: pid 1 (root's, alive) at a start time it does not have.
  const pid1Start = (await readFile('/proc/1/stat', 'utf8')).split(') ')[1].split(' ')[19];
  await writeFile(claim, `1 ${Number(pid1Start) + 1} deadholdertoken`);

  const { out } = await contend(key, version, 30_000);
  expect(out).toBe('switched');
});

// Review of 68d8b25: a claim the contender cannot read (another user's, mode 000) made its loop spin (link, EEXIST,
// read refused, again) with no wait and no bound. Now it is waited on as a live holder's, within the claim's bound.
it("a claim the contender cannot read is waited on as a live holder's, within its bound, not spun on", async () => {
  const { key, version, claim } = await sharedObject('unreadable');
  await writeFile(claim, `1 1 roottoken`);
  await chmod(claim, 0o000);

  expect(await contend(key, version, 30_000)).toEqual({
    ended: 'exited',
    out: expect.stringMatching(/still held after 15000 ms/),
  });
});
