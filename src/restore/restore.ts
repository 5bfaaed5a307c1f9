/**
 * Restores a pxar archive, or one path inside it, into a local directory: contents (holes kept
 * for all-zero blocks), mode, owner (when running as root), mtime with nanoseconds, xattrs, ACLs,
 * fcaps, symlinks, hardlinks, FIFOs, sockets and device nodes (when root).
 *
 * Safety: nothing is written outside TARGET, whatever the archive says. Every host path is TARGET
 * plus names the decoder has validated (no "/", ".", "..", NUL); every entry is created with
 * O_EXCL semantics (open O_CREAT|O_EXCL|O_NOFOLLOW, mkdir, symlink, link, rename-into-place of a
 * freshly made node all fail on an existing name), so an archive that lists a name twice cannot
 * make us follow a symlink it created earlier; children are only created inside directories this
 * restore made. Symlink targets and hardlink paths are used only as data: a hardlink is made to
 * the path where *we* restored its target (found by archive offset), never to the stored path.
 *
 * Metadata is applied in batches after contents: chown, then chmod (root) or xattrs first
 * (non-root, so a mode-000 file still takes its xattrs), then times; a directory's metadata is
 * applied after its children, so its mode cannot block them and its mtime stays as archived.
 * chattr flags (files and directories) come last of all. FAT attributes (hidden, system,
 * archive) and quota project ids are not restored.
 */
import { constants as FS, chmodSync, closeSync, ftruncateSync, lchownSync, linkSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { link, mkdir, mkdtemp, realpath, rmdir, stat, unlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { IoError, PbsfsError, UsageError, fromSystemError } from '../errors.js';
import type { DamageReport } from '../index/damage-report.js';
import type { ReadAt } from '../io/read-at.js';
import { PxarAccessor } from '../pxar/accessor.js';
import { HEADER_SIZE } from '../pxar/format.js';
import { allXattrs } from '../pxar/acl.js';
import { PxarSequentialDecoder } from '../pxar/sequential.js';
import type { PxarEntry, PxarStat, PxarXattr } from '../pxar/types.js';
import { applyFlags, applyTimes, applyXattrs, chattrLetters, detectTimeMethod, mkfifo, mknod, type FlagJob, type TimeMethod } from './tools.js';

export interface RestoreOptions {
  /** Restore only this path of the archive (it becomes TARGET/<its name>). */
  path?: string | Buffer;
  /** Restore owners (default: when running as root). */
  owner?: boolean;
  /**
   * Create character and block device nodes (default false: an archive must not be able to
   * plant /dev entries in a restore nobody asked for). Needs root; skipped with a warning
   * otherwise.
   */
  devices?: boolean;
  /** Restore xattrs, ACLs and fcaps (default true). */
  xattrs?: boolean;
  /** Called after every entry. */
  onProgress?: (p: RestoreProgress) => void;
  /** Restore chattr flags such as noatime or immutable (default true). */
  flags?: boolean;
  /** Entries whose metadata is applied together (default 4096). */
  batchSize?: number;
  /**
   * The `--allow-damaged` report the archive's streams record into: restored files whose
   * contents overlap a zero-filled range are then listed in `summary.damagedFiles`.
   */
  damage?: DamageReport;
}

/** A restored file with a range of zeros where its archive chunk was unreadable. */
export interface DamagedFile {
  /** Path as restored on disk. */
  path: string;
  /** Byte range [start, end) inside the file that holds zeros instead of the archived data. */
  start: number;
  end: number;
  /** The damaged archive stream and chunk. */
  archive: string;
  chunk: number;
}

export interface RestoreProgress {
  entries: number;
  bytes: number;
  /** Archive bytes walked so far and in total (for a percentage). */
  position: number;
  total: number;
}

export interface RestoreSummary {
  target: string;
  directories: number;
  files: number;
  symlinks: number;
  hardlinks: number;
  fifos: number;
  sockets: number;
  devices: number;
  /** Bytes of file contents written. */
  bytes: number;
  /** Entries not restored (devices without root, sockets with too long paths, ...). */
  skipped: number;
  /** How times were set: 'python' and 'touch' keep nanoseconds, 'node' keeps microseconds. */
  timeMethod: TimeMethod;
  warnings: string[];
  /** With a damage report only: files holding zero-filled ranges (at most MAX_DAMAGED_FILES). */
  damagedFiles?: DamagedFile[];
}

interface MetaJob {
  path: Buffer;
  stat: PxarStat;
  symlink: boolean;
  xattrs: PxarXattr[];
}

interface DirFrame {
  depth: number;
  path: Buffer;
  /** The directory entry, whose metadata is applied once its children are done. */
  entry: PxarEntry | undefined;
  /** True when the subtree is skipped. */
  skip: boolean;
}

const SLASH = Buffer.from('/');
const ZERO_BLOCK = Buffer.alloc(1024 * 1024);
const MAX_WARNINGS = 200;
const MAX_DAMAGED_FILES = 10000;
/** Longest unix socket path the kernel takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

class Restorer {
  readonly summary: RestoreSummary;
  private readonly pending: MetaJob[] = [];
  /** chattr flags, applied after everything else (immutable would block later steps). */
  private readonly flagJobs: FlagJob[] = [];
  /** Where each restored regular file went, by its FILENAME offset (for hardlinks). */
  private readonly restoredFiles = new Map<number, Buffer>();
  private readonly isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  private readonly owner: boolean;
  private readonly devices: boolean;
  private readonly xattrs: boolean;
  private readonly flags: boolean;
  private readonly batch: number;
  private tmpCounter = 0;

  private readonly damage: DamageReport | undefined;

  constructor(
    private readonly acc: PxarAccessor,
    private readonly staging: string,
    target: string,
    private readonly timeMethod: TimeMethod,
    opts: RestoreOptions,
    private readonly payload: ReadAt | undefined,
  ) {
    this.damage = opts.damage;
    this.owner = opts.owner ?? this.isRoot;
    this.devices = opts.devices ?? false;
    this.xattrs = opts.xattrs ?? true;
    this.flags = opts.flags ?? true;
    this.batch = Math.max(1, opts.batchSize ?? 4096);
    this.summary = {
      target,
      directories: 0,
      files: 0,
      symlinks: 0,
      hardlinks: 0,
      fifos: 0,
      sockets: 0,
      devices: 0,
      bytes: 0,
      skipped: 0,
      timeMethod,
      warnings: [],
      ...(opts.damage !== undefined ? { damagedFiles: [] } : {}),
    };
  }

  /**
   * Notes which parts of a just-written file came from zero-filled chunks. Its contents have
   * been read by now, so every damaged chunk under them is already in the report.
   */
  private noteDamage(path: Buffer, e: PxarEntry): void {
    const list = this.summary.damagedFiles;
    if (this.damage === undefined || list === undefined || this.damage.count === 0 || e.size === 0) return;
    let src: ReadAt | undefined;
    let start: number;
    if (e.contentOffset !== undefined) {
      src = this.acc.archive;
      start = e.contentOffset;
    } else if (e.payloadOffset !== undefined && this.payload !== undefined) {
      src = this.payload;
      start = e.payloadOffset + HEADER_SIZE;
    } else return;
    for (const d of this.damage.overlapping(src.name, start, start + e.size)) {
      if (list.length >= MAX_DAMAGED_FILES) return;
      if (list.length === MAX_DAMAGED_FILES - 1) this.warn(`${MAX_DAMAGED_FILES} files with damaged ranges: the list stops there`);
      list.push({
        path: path.toString(),
        start: Math.max(d.start, start) - start,
        end: Math.min(d.end, start + e.size) - start,
        archive: d.archive,
        chunk: d.chunk,
      });
    }
  }

  warn(line: string): void {
    const w = this.summary.warnings;
    if (w.length < MAX_WARNINGS) w.push(line);
    else if (w.length === MAX_WARNINGS) w.push('(further warnings suppressed)');
  }

  private stagingPath(): string {
    return join(this.staging, `n${this.tmpCounter++}`);
  }

  /** Queues an entry's metadata; applies a batch when enough have gathered. */
  async queue(path: Buffer, e: PxarEntry): Promise<void> {
    const md = e.metadata!;
    const symlink = e.kind === 'symlink';
    this.pending.push({ path, stat: md.stat, symlink, xattrs: this.xattrs && !symlink ? allXattrs(md) : [] });
    const letters = e.kind === 'file' || e.kind === 'directory' ? chattrLetters(md.stat.flags) : '';
    if (letters !== '' && this.flags) this.flagJobs.push({ path, letters });
    if (this.pending.length >= this.batch) await this.flush();
  }

  /** Applies the collected chattr flags: the very last step. */
  async applyFlags(): Promise<void> {
    for (const line of await applyFlags(this.flagJobs.splice(0))) this.warn(`flags: ${line}`);
  }

  async flush(): Promise<void> {
    const jobs = this.pending.splice(0);
    if (jobs.length === 0) return;
    if (this.owner) {
      for (const j of jobs) {
        try {
          lchownSync(j.path, j.stat.uid, j.stat.gid);
        } catch (e) {
          this.warn(`${j.path.toString()}: cannot set owner ${j.stat.uid}:${j.stat.gid}: ${(e as Error).message}`);
        }
      }
    }
    const chmodAll = async (): Promise<void> => {
      for (const j of jobs) {
        if (j.symlink) continue;
        try {
          chmodSync(j.path, j.stat.mode & 0o7777);
        } catch (e) {
          throw fromSystemError(e, j.path.toString(), 'cannot set mode');
        }
      }
    };
    const xattrs = async (): Promise<void> => {
      if (!this.xattrs) return;
      for (const line of await applyXattrs(jobs)) this.warn(`xattrs: ${line}`);
    };
    // chown clears setuid bits and file capabilities: chmod and xattrs come after it. As root
    // chmod first (ACLs then agree with the mode); otherwise xattrs first, while we can write.
    if (this.isRoot) {
      await chmodAll();
      await xattrs();
    } else {
      await xattrs();
      await chmodAll();
    }
    const times = jobs.map((j) => ({ path: j.path, secs: j.stat.mtimeSecs, nanos: j.stat.mtimeNanos }));
    for (const line of await applyTimes(times, this.timeMethod)) this.warn(`times: ${line}`);
  }

  /**
   * Writes a regular file's contents; all-zero blocks become holes. The file system calls are
   * synchronous on purpose: a restore is a batch job dominated by many small files, and each
   * async call would cost a thread-pool round trip (several times slower on many small files).
   */
  async writeFile(path: Buffer, e: PxarEntry, blocks: AsyncIterable<Buffer>): Promise<void> {
    let fd: number;
    try {
      fd = openSync(path, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw fromSystemError(err, path.toString(), 'cannot create file');
    }
    try {
      let pos = 0;
      let hole = false;
      for await (const b of blocks) {
        hole = b.equals(ZERO_BLOCK.subarray(0, b.length));
        if (!hole) {
          let done = 0;
          while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
        }
        pos += b.length;
      }
      if (pos !== e.size) throw new IoError(`file contents ended after ${pos} of ${e.size} bytes`, { file: path.toString() });
      // A trailing hole leaves the file short: set its length.
      if (hole) ftruncateSync(fd, e.size);
      this.summary.bytes += e.size;
      this.noteDamage(path, e);
    } catch (err) {
      throw err instanceof PbsfsError ? err : fromSystemError(err, path.toString(), 'cannot write file');
    } finally {
      closeSync(fd);
    }
  }

  /** Creates one non-directory entry at `path` (its parent exists and is ours). */
  async createLeaf(path: Buffer, e: PxarEntry, contents: () => AsyncIterable<Buffer>): Promise<void> {
    const s = this.summary;
    switch (e.kind) {
      case 'file':
        await this.writeFile(path, e, contents());
        this.restoredFiles.set(e.filenameOffset, path);
        s.files++;
        await this.queue(path, e);
        return;
      case 'hardlink': {
        const existing = this.restoredFiles.get(e.hardlink!.targetFilenameOffset);
        if (existing !== undefined) {
          try {
            linkSync(existing, path);
          } catch (err) {
            throw fromSystemError(err, path.toString(), 'cannot create hardlink');
          }
          s.hardlinks++;
          return;
        }
        // The target is outside what we restore (or not restored yet): restore it here as a file.
        const target = await this.acc.resolve(e);
        await this.writeFile(path, target, this.acc.stream(target));
        this.restoredFiles.set(target.filenameOffset, path);
        s.files++;
        await this.queue(path, target);
        return;
      }
      case 'symlink':
        try {
          symlinkSync(e.symlinkTarget!, path);
        } catch (err) {
          throw fromSystemError(err, path.toString(), 'cannot create symlink');
        }
        s.symlinks++;
        await this.queue(path, e);
        return;
      case 'fifo': {
        const tmp = this.stagingPath();
        await mkfifo(tmp);
        await this.moveIntoPlace(tmp, path);
        s.fifos++;
        await this.queue(path, e);
        return;
      }
      case 'socket':
        if (!(await this.makeSocket(path))) return;
        s.sockets++;
        await this.queue(path, e);
        return;
      case 'chardev':
      case 'blockdev': {
        if (!this.devices || !this.isRoot) {
          this.warn(`${path.toString()}: device node skipped (${this.devices ? 'needs root' : 'device nodes were not asked for'})`);
          s.skipped++;
          return;
        }
        const tmp = this.stagingPath();
        await mknod(tmp, e.kind === 'chardev' ? 'c' : 'b', e.device!.major, e.device!.minor);
        await this.moveIntoPlace(tmp, path);
        s.devices++;
        await this.queue(path, e);
        return;
      }
      case 'directory':
        throw new UsageError('createLeaf called for a directory');
    }
  }

  /** Moves a node made in the staging directory to its final name, refusing to replace anything. */
  private async moveIntoPlace(tmp: string, path: Buffer): Promise<void> {
    try {
      // link() fails on an existing name (rename would replace it); then drop the staging name.
      await link(tmp, path);
    } catch (err) {
      throw fromSystemError(err, path.toString(), 'cannot create');
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  /** Binds a unix socket in the staging directory and links it into place. */
  private async makeSocket(path: Buffer): Promise<boolean> {
    const tmp = this.stagingPath();
    if (Buffer.byteLength(tmp) > MAX_SOCKET_PATH) {
      this.warn(`${path.toString()}: socket skipped (restore path too long for a unix socket)`);
      this.summary.skipped++;
      return false;
    }
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(tmp, () => resolve());
    }).catch((e: unknown) => {
      throw fromSystemError(e, path.toString(), 'cannot create socket');
    });
    try {
      await link(tmp, path);
    } catch (err) {
      throw fromSystemError(err, path.toString(), 'cannot create socket');
    } finally {
      // Closing the server removes the staging name; the linked name stays.
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    return true;
  }

  async makeDir(path: Buffer): Promise<void> {
    try {
      mkdirSync(path, 0o700);
    } catch (err) {
      throw fromSystemError(err, path.toString(), 'cannot create directory');
    }
    this.summary.directories++;
  }
}

function join2(parent: Buffer, name: Buffer): Buffer {
  return Buffer.concat([parent, SLASH, name]);
}

/**
 * Restores `archive` (+ `payload` for a split archive) into `target`. Without `opts.path` the
 * archive root becomes `target` itself (created if missing; it may exist, empty or not, but
 * nothing in it is ever replaced); with it, the entry at that path becomes `target/<name>`.
 */
export async function restorePxar(
  archive: ReadAt,
  payload: ReadAt | undefined,
  target: string,
  opts: RestoreOptions = {},
): Promise<RestoreSummary> {
  const acc = await PxarAccessor.open(archive, payload);
  const start = opts.path === undefined ? acc.root() : await acc.requirePath(opts.path);
  const isRootStart = start.filenameOffset < 0;
  try {
    await mkdir(target, { recursive: true });
  } catch (err) {
    throw fromSystemError(err, target, 'cannot create the restore target');
  }
  // stat, not lstat: TARGET is the user's own path and may be a symlink to a directory.
  const st = await stat(target).catch((err: unknown) => {
    throw fromSystemError(err, target, 'cannot access the restore target');
  });
  if (!st.isDirectory()) throw new UsageError(`restore target ${target} is not a directory`);
  const realTarget = await realpath(target);
  const staging = await mkdtemp(join(realTarget, '.pbsfs-restore-')).catch((err: unknown) => {
    throw fromSystemError(err, realTarget, 'cannot write into the restore target');
  });
  const timeMethod = await detectTimeMethod();
  const r = new Restorer(acc, staging, realTarget, timeMethod, opts, payload);
  const targetBuf = Buffer.from(realTarget);
  try {
    if (start.kind !== 'directory') {
      const dest = join2(targetBuf, start.name);
      await r.createLeaf(dest, start, () => acc.stream(start));
      opts.onProgress?.({ entries: 1, bytes: r.summary.bytes, position: 1, total: 1 });
    } else {
      await restoreTree(acc, r, start, isRootStart, targetBuf, payload, opts);
    }
    // The staging directory goes before the last batch: removing it changes TARGET's mtime,
    // which the root directory's metadata (queued last) then sets.
    await rmdir(staging);
    await r.flush();
    await r.applyFlags();
  } finally {
    await rmdir(staging).catch(() => undefined);
  }
  return r.summary;
}

async function restoreTree(
  acc: PxarAccessor,
  r: Restorer,
  start: PxarEntry,
  isRootStart: boolean,
  targetBuf: Buffer,
  payload: ReadAt | undefined,
  opts: RestoreOptions,
): Promise<void> {
  const seq = await PxarSequentialDecoder.open(acc.archive, payload);
  const startPos = start.entryOffset;
  const total = Math.max(1, start.end - startPos);
  const stack: DirFrame[] = [];
  const finishFrame = async (f: DirFrame): Promise<void> => {
    if (!f.skip && f.entry !== undefined) await r.queue(f.path, f.entry);
  };
  let entries = 0;
  const walk = seq.entries(isRootStart ? undefined : { entry: start, path: Buffer.from('/') });
  for await (const e of walk) {
    entries++;
    if (e.depth === 0) {
      // The start directory: TARGET itself for the archive root, else TARGET/<name>.
      let path = targetBuf;
      if (isRootStart) r.summary.directories++;
      else {
        path = join2(targetBuf, start.name);
        await r.makeDir(path);
      }
      stack.push({ depth: 0, path, entry: e, skip: false });
      continue;
    }
    while (stack.length > 0 && stack[stack.length - 1]!.depth >= e.depth) await finishFrame(stack.pop()!);
    const parent = stack[stack.length - 1];
    if (parent === undefined || parent.depth !== e.depth - 1) {
      throw new IoError(`restore lost track of the directory of ${e.path.toString()}`);
    }
    const path = join2(parent.path, e.name);
    if (parent.skip) {
      r.summary.skipped++;
      if (e.kind === 'directory') stack.push({ depth: e.depth, path, entry: undefined, skip: true });
      continue;
    }
    if (e.kind === 'directory') {
      await r.makeDir(path);
      stack.push({ depth: e.depth, path, entry: e, skip: false });
    } else {
      await r.createLeaf(path, e, () => seq.stream(e));
    }
    opts.onProgress?.({ entries, bytes: r.summary.bytes, position: Math.min(total, e.filenameOffset - startPos), total });
  }
  while (stack.length > 0) await finishFrame(stack.pop()!);
  opts.onProgress?.({ entries, bytes: r.summary.bytes, position: total, total });
}
