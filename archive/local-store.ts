import { randomBytes } from 'node:crypto';
import { createWriteStream, type Dirent } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { addAbortSignal, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ArchiveObjectNotFoundError } from './errors';
import { assertKey, type ArchiveStore, type StoredObject } from './store';

/**
 * An archive in a local directory: each key is a file under it. A put writes a dot-named temp file beside the target,
 * fsyncs it, renames it over the target and fsyncs the directory, so a crash leaves the old file or the new one,
 * never a torn one; list() ignores dot-names (left-over temp files of a crash). A call's signal is checked before it
 * starts and ends a put's copy or a read stream part way.
 */
export function createLocalStore(dir: string): ArchiveStore {
  const root = path.resolve(dir);
  const fileOf = (key: string) => {
    assertKey(key);
    return path.join(root, ...key.split('/'));
  };

  return {
    kind: 'local',
    location: root,

    async put(key, body, options) {
      options?.signal?.throwIfAborted();
      const file = fileOf(key);
      const folder = path.dirname(file);
      await mkdir(folder, { recursive: true });
      const temp = path.join(folder, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
      try {
        const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
        await pipeline(source, createWriteStream(temp, { flags: 'wx' }), { signal: options?.signal });
        await fsync(temp);
        await rename(temp, file);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      await fsync(folder);
      return (await this.stat(key))!;
    },

    async get(key, options) {
      options?.signal?.throwIfAborted();
      const file = fileOf(key);
      try {
        // Opened first, so that a missing file rejects here rather than as a stream error later.
        const handle = await open(file, 'r');
        const stream = handle.createReadStream();
        return options?.signal ? addAbortSignal(options.signal, stream) : stream;
      } catch (err) {
        if (isMissing(err)) throw new ArchiveObjectNotFoundError(key, root, { cause: err });
        throw err;
      }
    },

    async stat(key, options) {
      options?.signal?.throwIfAborted();
      try {
        const info = await stat(fileOf(key));
        return info.isFile() ? { key, size: info.size, lastModified: info.mtime } : undefined;
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw err;
      }
    },

    async *list(prefix, options) {
      options?.signal?.throwIfAborted();
      // Walk only the folder the prefix names (its part up to the last '/'), not the whole archive.
      const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
      if (base) assertKey(base);
      for await (const object of walk(root, base)) if (object.key.startsWith(prefix)) yield object;
    },

    async delete(key, options) {
      options?.signal?.throwIfAborted();
      const file = fileOf(key);
      try {
        await unlink(file);
      } catch (err) {
        if (isMissing(err)) return;
        throw err;
      }
      await fsync(path.dirname(file));
    },

    async close() {},
  };
}

/** Files under root/base ('/'-joined paths relative to root), depth first, skipping dot-names. */
async function* walk(root: string, base: string): AsyncGenerator<StoredObject> {
  let entries: Dirent[];
  try {
    entries = await readdir(path.join(root, ...base.split('/').filter(Boolean)), { withFileTypes: true });
  } catch (err) {
    if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
    throw err;
  }
  const names = entries.filter((e) => !e.name.startsWith('.')).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of names) {
    const key = base ? `${base}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      yield* walk(root, key);
    } else if (entry.isFile()) {
      const info = await stat(path.join(root, ...key.split('/')));
      yield { key, size: info.size, lastModified: info.mtime };
    }
  }
}

/** Flushes a file's data, or a directory's entries (a rename), to disk. */
async function fsync(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}
