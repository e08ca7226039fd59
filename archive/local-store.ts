import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync, type Dirent } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { addAbortSignal, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ArchiveObjectChangedError, ArchiveObjectNotFoundError } from './errors';
import { assertKey, collectUpTo, type ArchiveStore, type StoredObject } from './store';

/**
 * An archive in a local directory: each key is a file under it. A put writes a dot-named temp file beside the target,
 * fsyncs it, renames it over the target and fsyncs the directory, so a crash leaves the old file or the new one,
 * never a torn one; list() ignores dot-names (left-over temp files of a crash, deleted by the next put or delete in
 * their folder once their writer is gone). A call's signal is checked before it
 * starts and ends a put's copy or a read stream part way. A conditional replace holds a claim on the version beside
 * the target (processes of one host share the directory) while it compares and renames; a version is the bytes'
 * sha256.
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
      const temp = path.join(folder, putTempName(path.basename(file)));
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
      await collectPutTemps(folder);
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
      const changed = () => new ArchiveObjectChangedError(key, root);
      await withVersionClaim(file, version, changed, async () => {
        const bytes = await readUpTo(file, COMPARED_MAX_BYTES, key, root);
        if (!bytes || sha256(bytes) !== version) throw changed();
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
      await collectPutTemps(path.dirname(file));
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

/** How long to wait for a claim another live process holds. */
const CLAIM_WAIT_MS = 15_000;

/**
 * Runs fn (compare, then rename) holding the claim to replace this version of the file. A claim is a file created
 * once and never taken from a live holder: `.<name>.claim-<version>-<attempt>`, linked from a note naming the
 * claimant (claimantNote), so it appears whole or not at all. The claimant of the lowest attempt whose
 * holder still runs has it; a claim whose holder is gone (holderGone) is not removed but passed over: the
 * next attempt is claimed in its turn, by one contender only (a link fails when the name exists). A holder removes
 * only its own claim; no one removes a claim on the version in force, nor a recent one on any version (the bytes of a
 * version may come back), so a lower attempt is never claimed again while a higher one is held, and two never hold a
 * version at once. A live holder, however long frozen, is waited for (at most CLAIM_WAIT_MS). Holders share one pid
 * namespace: a local archive is for one host. Claims left by holders that died are collected once an hour old and
 * of a version no longer in force (collectClaims).
 */
async function withVersionClaim<T>(
  file: string,
  version: string,
  changed: () => Error,
  fn: () => Promise<T>,
): Promise<T> {
  const folder = path.dirname(file);
  const prefix = `.${path.basename(file)}.claim-${version}-`;
  const note = path.join(folder, `${prefix}${randomBytes(6).toString('hex')}.tmp`);
  await mkdir(folder, { recursive: true });
  await writeFile(note, claimantNote(), { flag: 'wx' });
  let claim: string;
  try {
    const claimed = await claimAttempt(folder, prefix, note, () => stillVersion(file, version));
    if (claimed === undefined) throw changed();
    claim = claimed;
  } finally {
    await rm(note, { force: true });
  }
  try {
    return await fn();
  } finally {
    await rm(claim, { force: true });
    await collectClaims(folder, path.basename(file), file);
  }
}

/**
 * Claims the first attempt no live process holds (see withVersionClaim); returns its path, or undefined once the file
 * no longer has the version (a holder replaced it: waiting longer would only end in refusal).
 */
async function claimAttempt(
  folder: string,
  prefix: string,
  note: string,
  current: () => Promise<boolean>,
): Promise<string | undefined> {
  const until = Date.now() + CLAIM_WAIT_MS;
  for (let attempt = 1; ;) {
    const claim = path.join(folder, `${prefix}${attempt}`);
    try {
      await link(note, claim);
      return claim;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // Gone (released just now): claim this attempt again. Unreadable (another user's): waited on as a live holder's.
    const held = await readFile(claim, 'utf8').catch((err: NodeJS.ErrnoException) =>
      err.code === 'ENOENT' ? undefined : null,
    );
    if (held === undefined) continue;
    if (held !== null && holderGone(held)) {
      attempt += 1;
      continue;
    }
    if (!(await current())) return undefined;
    if (Date.now() > until) throw new Error(`Archive object claim ${claim} still held after ${CLAIM_WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Whether the file still has this version (sha256 of its bytes). */
async function stillVersion(file: string, version: string): Promise<boolean> {
  const bytes = await readFile(file).catch(() => undefined);
  return bytes !== undefined && sha256(bytes) === version;
}

/** How old a dead holder's claim on a version no longer in force is before it is collected. */
const CLAIM_COLLECT_MS = 3_600_000;

/** Removes claims (and notes) left by holders that died, on versions no longer in force, once CLAIM_COLLECT_MS old. */
async function collectClaims(folder: string, name: string, file: string): Promise<void> {
  const bytes = await readFile(file).catch(() => undefined);
  const inForce = bytes && `.${name}.claim-${sha256(bytes)}-`;
  const claims = (await readdir(folder).catch(() => [] as string[])).filter(
    (n) => n.startsWith(`.${name}.claim-`) && !(inForce && n.startsWith(inForce)),
  );
  for (const claim of claims) {
    const where = path.join(folder, claim);
    const info = await stat(where).catch(() => undefined);
    if (!info || Date.now() - info.mtimeMs < CLAIM_COLLECT_MS) continue;
    const held = await readFile(where, 'utf8').catch(() => undefined);
    if (held !== undefined && holderGone(held)) await rm(where, { force: true });
  }
}

/**
 * What a claim says of its holder: pid, the process's start time (clock ticks since boot, /proc/<pid>/stat) and a
 * random token. The start time tells a holder from a later process given its pid again (a restarted container's
 * worker is pid 1 again).
 */
function claimantNote(): string {
  return `${process.pid} ${startTimeOf(process.pid) ?? '-'} ${randomBytes(8).toString('hex')}`;
}

/**
 * A put's temp file: `.<name>.put-<pid>-<start time>-<random>.tmp`, its writer told by its name, so that the temp
 * file of a writer that died (it holds rows: a rewritten segment's, an erasure's subject's neighbours) is deleted by
 * the next put or delete in its folder (collectPutTemps), which is its segment's.
 */
function putTempName(name: string): string {
  return `.${name}.put-${process.pid}-${startTimeOf(process.pid) ?? '-'}-${randomBytes(6).toString('hex')}.tmp`;
}
const PUT_TEMP = /^\..+\.put-(\d+)-(\d+|-)-[0-9a-f]{12}\.tmp$/;
/** A temp file of a version before putTempName (its writer unknown): deleted once PUT_TEMP_OLD_MS old. */
const PUT_TEMP_BEFORE = /^\.(?!.*\.claim-).+\.[0-9a-f]{12}\.tmp$/;
const PUT_TEMP_OLD_MS = 3_600_000;

/** Deletes the temp files in a folder whose writers are gone (see putTempName). */
async function collectPutTemps(folder: string): Promise<void> {
  for (const name of await readdir(folder).catch(() => [] as string[])) {
    const where = path.join(folder, name);
    const writer = PUT_TEMP.exec(name);
    if (writer) {
      if (holderGone(`${writer[1]} ${writer[2]}`)) await rm(where, { force: true });
    } else if (PUT_TEMP_BEFORE.test(name)) {
      const info = await stat(where).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > PUT_TEMP_OLD_MS) await rm(where, { force: true });
    }
  }
}

/** Whether a claim's holder is gone: its pid no longer runs, or runs a process started at another time. */
function holderGone(held: string): boolean {
  const [pidText, started] = held.split(' ');
  const pid = Number(pidText);
  if (!Number.isSafeInteger(pid) || pid <= 0) return true; // not a claimant's note: no one holds it
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: the pid runs, as another user (perhaps a process given the pid since): its start time tells.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return true;
  }
  const now = startTimeOf(pid);
  return /^\d+$/.test(started ?? '') && now !== undefined && now !== started;
}

/** A process's start time as /proc gives it (field 22 of its stat), or undefined where there is no /proc. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: fields are counted after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
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
