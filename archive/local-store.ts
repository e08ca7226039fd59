import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type Dirent } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { addAbortSignal, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ArchiveObjectChangedError, ArchiveObjectNotFoundError } from './errors';
import { assertKey, collectUpTo, type ArchiveStore, type StoredObject } from './store';

/**
 * An archive in a local directory: each key is a file under it. A put writes a dot-named temp file beside the target,
 * fsyncs it, renames it over the target and fsyncs the directory, so a crash leaves the old file or the new one,
 * never a torn one; list() ignores dot-names (left-over temp files of a crash). A call's signal is checked before it
 * starts and ends a put's copy or a read stream part way. A conditional replace holds a lock file beside the target
 * (processes of one host share the directory) while it compares and renames; a version is the bytes' sha256.
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

    async readVersioned(key, maxBytes, options) {
      options?.signal?.throwIfAborted();
      const bytes = await readUpTo(fileOf(key), maxBytes, key, root);
      return bytes && { bytes, version: sha256(bytes) };
    },

    async replaceIfVersion(key, body, version, options) {
      const file = fileOf(key);
      await withLockFile(`${path.join(path.dirname(file), `.${path.basename(file)}`)}.lock`, async () => {
        const bytes = await readUpTo(file, COMPARED_MAX_BYTES, key, root);
        if (!bytes || sha256(bytes) !== version) throw new ArchiveObjectChangedError(key, root);
        await this.put(key, body, options);
      });
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

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** A file's bytes, or undefined when there is none. */
async function readUpTo(file: string, maxBytes: number, key: string, root: string): Promise<Buffer | undefined> {
  try {
    return await collectUpTo(createReadStream(file), maxBytes, key, root);
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/** The most a conditional replace reads to compare (it is for manifests, a few KiB). */
const COMPARED_MAX_BYTES = 16 * 1024 * 1024;

/** How long to wait for a lock file another live process holds, and how long one left empty may stand. */
const LOCK_WAIT_MS = 15_000;
const LOCK_UNWRITTEN_MS = 60_000;

/**
 * Runs fn while holding the lock file. It is created exclusively and names its holder (pid and a random token); one
 * left by a process that is gone is taken over, never one whose holder still runs however long it takes (a process
 * frozen between its compare and its rename must not find its lock taken and the manifest changed under it). Holders
 * share one pid namespace: a local archive is for one host. Only the holder's own lock is removed at the end.
 */
async function withLockFile<T>(lock: string, fn: () => Promise<T>): Promise<T> {
  const mine = `${process.pid} ${randomBytes(8).toString('hex')}`;
  const until = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await writeFile(lock, mine, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const held = await readFile(lock, 'utf8').catch(() => undefined);
      if (held !== undefined && (await lockAbandoned(lock, held))) await takeOver(lock, held);
      else if (Date.now() > until) throw new Error(`Archive lock ${lock} still held after ${LOCK_WAIT_MS} ms`);
      else await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  try {
    return await fn();
  } finally {
    if ((await readFile(lock, 'utf8').catch(() => undefined)) === mine) await rm(lock, { force: true });
  }
}

/** Whether a lock file's holder is gone: its pid no longer runs, or it was never written and is old. */
async function lockAbandoned(lock: string, held: string): Promise<boolean> {
  const pid = Number(held.split(' ')[0]);
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    const info = await stat(lock).catch(() => undefined);
    return info !== undefined && Date.now() - info.mtimeMs > LOCK_UNWRITTEN_MS;
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Removes an abandoned lock file, only if it is still the one judged abandoned: it is moved aside first (one step), and
 * a lock another process took meanwhile is put back.
 */
async function takeOver(lock: string, held: string): Promise<void> {
  const aside = `${lock}.${randomBytes(6).toString('hex')}.abandoned`;
  try {
    await rename(lock, aside);
  } catch (err) {
    if (isMissing(err)) return;
    throw err;
  }
  if ((await readFile(aside, 'utf8').catch(() => undefined)) !== held) await link(aside, lock).catch(() => undefined);
  await rm(aside, { force: true });
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
