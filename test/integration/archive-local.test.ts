import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
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
