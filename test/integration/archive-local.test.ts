import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { randomUUID } from 'node:crypto';
import { createArchiveStore, rewriteSegment, writeSegment, type ArchiveStore } from '../../archive';
import { baseConfig } from '../support/env';
import { plainRow } from '../support/archive';
import { archiveStoreBehaviour } from '../support/archive-store-suite';

// The archive in a local directory (ARCHIVE_STORE=local), on the real filesystem.

/** A process's start time, as /proc/<pid>/stat gives it (field 22): what a claim names beside the pid. */
async function startTime(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}
let dir: string;
let store: ArchiveStore;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'crm-archive-'));
  store = createArchiveStore(baseConfig({ ARCHIVE_STORE: 'local', ARCHIVE_DIR: dir }).archive);
});
afterAll(async () => {
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('local archive store', () => {
  archiveStoreBehaviour(() => store);

  const claimsOf = async (key: string) =>
    (await readdir(path.join(dir, path.dirname(key)))).filter((f) => f.includes('.claim-'));
  /** A claim on the version as a holder leaves it: its first attempt, naming that pid. */
  const claimFile = (key: string, version: string, attempt = 1) =>
    path.join(dir, path.dirname(key), `.${path.basename(key)}.claim-${version}-${attempt}`);

  it("a conditional replace waits for a live holder's claim, however old, and passes over one whose holder is gone", async () => {
    const key = `locks/${randomUUID()}/manifest.json`;
    await store.put(key, Buffer.from('v1'));
    const version = (await store.readVersioned(key, 1024))!.version;
    // A holder frozen between its compare and its rename: alive, its claim old. Never taken from it while it runs.
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    const claim = claimFile(key, version);
    const note = `${holder.pid} ${await startTime(holder.pid!)} token`;
    await writeFile(claim, note);
    await utimes(claim, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
    let replaced = false;
    const replacing = store.replaceIfVersion(key, Buffer.from('v2'), version).then(() => (replaced = true));
    await new Promise((r) => setTimeout(r, 1500));
    expect({ replaced, claimLeft: await readFile(claim, 'utf8') }).toEqual({ replaced: false, claimLeft: note });
    // Gone: its claim is passed over and the replace goes through; the replacer's own claim goes, and the dead
    // holder's, an hour old on a version no longer in force, is collected (collectClaims).
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    await replacing;
    expect((await readFile(path.join(dir, key))).toString()).toBe('v2');
    expect(await claimsOf(key)).toEqual([]);
  });

  // attack33 (against 9f5342a): a lock file left by a holder killed mid-switch was taken over by moving it aside; a
  // contender that judged it abandoned but moved it after another had already taken over and made its own moved
  // that live lock aside, and a third then made one too: two live holders switched one version (trial 0 of 150, 24
  // contenders). A claim is now never removed while its version is current: a dead holder's is passed over.
  it("contenders racing past a killed holder's claim switch each version once", async () => {
    const key = `locks/${randomUUID()}/manifest.json`;
    const dead = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await new Promise((r) => dead.once('exit', r));
    for (let trial = 0; trial < 150; trial++) {
      await store.put(key, Buffer.from(`{"trial":${trial}}`));
      const version = (await store.readVersioned(key, 1024))!.version;
      await writeFile(claimFile(key, version), `${dead.pid} token`);
      const results = await Promise.allSettled(
        Array.from({ length: 24 }, (_, i) =>
          store.replaceIfVersion(key, Buffer.from(`{"trial":${trial},"by":${i}}`), version),
        ),
      );
      const refused = results.filter((r) => r.status === 'rejected');
      for (const r of refused) expect((r.reason as Error).name).toBe('ArchiveObjectChangedError');
      expect({ trial, switched: results.length - refused.length }).toEqual({ trial, switched: 1 });
      // Every contender's own claim is gone; the killed holder's stays (recent).
      expect((await claimsOf(key)).filter((c) => c.includes(version))).toEqual([
        path.basename(claimFile(key, version)),
      ]);
    }
  });

  // attack33 (against 9f5342a): the image runs the worker as pid 1, so a worker killed mid-switch leaves a lock naming
  // pid 1, and the restarted worker is pid 1 again: the lock looked held by a live process for ever (each replace of
  // the manifest failed after 15 s). A claim also names its holder's start time, which a later process of that pid
  // does not have.
  it('a claim left by an earlier process of the same pid (another start time) is passed over, not waited on', async () => {
    const key = `locks/${randomUUID()}/manifest.json`;
    await store.put(key, Buffer.from('{"generation":1}'));
    const first = (await store.readVersioned(key, 1024))!.version;
    const earlier = Number(await startTime(process.pid)) - 1;
    await writeFile(claimFile(key, first), `${process.pid} ${earlier} 00deadholder0000`);
    // Waited on as live, each replace would fail after 15 s ("claim ... still held").
    await store.replaceIfVersion(key, Buffer.from('{"generation":2}'), first);
    const second = (await store.readVersioned(key, 1024))!.version;
    await store.replaceIfVersion(key, Buffer.from('{"generation":3}'), second);
    expect((await readFile(path.join(dir, key))).toString()).toBe('{"generation":3}');
    expect(await claimsOf(key)).toEqual([path.basename(claimFile(key, first))]);
  });

  it('leaves no file anywhere in the directory that holds an erased value, temp files included', async () => {
    const name = `Zoë ${randomUUID()}`;
    const rows = [plainRow(1, JSON.stringify({ name })), plainRow(2, '{"name": "someone else"}')];
    const segment = `local_erase_${Date.now()}`;
    await writeSegment(store, { segment, table: 'event_journal', rows });
    await rewriteSegment(store, segment, (row) => (row.payload.includes(name) ? 'drop' : 'keep'));

    const files = await allFiles(dir);
    expect(files.some((f) => f.includes(segment))).toBe(true);
    for (const file of files) {
      const raw = await readFile(file);
      const text = (file.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8');
      expect({ file, found: text.includes(name) }).toEqual({ file, found: false });
    }
    expect(files.filter((f) => f.includes(segment) && path.basename(f).startsWith('.'))).toEqual([]);
  });
});

/** Every file under dir, dot-files too (the store itself skips them). */
async function allFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}
