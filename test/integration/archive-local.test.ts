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

  it("a conditional replace waits for a live holder's lock, however old, and takes over one whose holder is gone", async () => {
    const key = `locks/${randomUUID()}/manifest.json`;
    await store.put(key, Buffer.from('v1'));
    const lock = path.join(dir, path.dirname(key), '.manifest.json.lock');
    const version = (await store.readVersioned(key, 1024))!.version;
    // A holder frozen between its compare and its rename: alive, its lock old. Not taken over while it runs.
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    await writeFile(lock, `${holder.pid} token`);
    await utimes(lock, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
    let replaced = false;
    const replacing = store.replaceIfVersion(key, Buffer.from('v2'), version).then(() => (replaced = true));
    await new Promise((r) => setTimeout(r, 1500));
    expect({ replaced, lockLeft: await readFile(lock, 'utf8') }).toEqual({
      replaced: false,
      lockLeft: `${holder.pid} token`,
    });
    // Gone: its lock is taken over, the replace goes through and leaves no lock behind.
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    await replacing;
    expect((await readFile(path.join(dir, key))).toString()).toBe('v2');
    expect((await readdir(path.dirname(lock))).filter((f) => f.includes('.lock'))).toEqual([]);
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
    expect(files.filter((f) => path.basename(f).startsWith('.'))).toEqual([]);
  });
});

/** Every file under dir, dot-files too (the store itself skips them). */
async function allFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}
