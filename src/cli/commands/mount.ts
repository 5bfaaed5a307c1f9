/**
 * `pbsfs mount [SNAPSHOT [ARCHIVE]] MOUNTPOINT`: a read-only FUSE filesystem over a datastore.
 *
 *   MOUNTPOINT only             the whole datastore (or the --ns namespace) as a tree
 *   SNAPSHOT MOUNTPOINT         one directory entry per archive of the snapshot
 *   SNAPSHOT ARCHIVE MOUNTPOINT that archive: a pxar tree, or a directory with the one image/blob
 *
 * By default the command daemonizes: the parent checks the arguments and loads the key (asking
 * for the passphrase on the terminal if needed), then starts a detached child of the same script
 * with the internal --daemon-child flag. The plan, including the decrypted key or the master-key
 * passphrase, travels over a pipe (the child's fd 3), never argv or a shared environment. The
 * child mounts and reports over a second pipe (fd 4); the parent exits 0 only once the mount
 * answers, or prints the child's error and exits non-zero. --foreground mounts in-process.
 *
 * SIGINT/SIGTERM unmount (lazily if files are still open: the tree then disappears once they are
 * closed) and the process exits when the kernel ends the session; --stats prints the counters.
 *
 * PBSFS_NLINK_SCAN=auto|scan|off chooses how hardlink counts (st_nlink of files) are found: a
 * metadata scan of the archive on the first stat of a file, by default only for split archives
 * and unified archives up to 64 MiB (see vfs/pxar-tree.ts); 'off' keeps browsing strictly lazy.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeSync, closeSync, openSync } from 'node:fs';
import { resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { Option, type Command } from 'commander';
import { ChunkReader } from '../../chunks/chunk-reader.js';
import { inlineChunkDecoder, type ChunkDecoder, type PipelinedDecoder } from '../../chunks/chunk-decoder.js';
import { WorkerPoolDecoder } from '../../chunks/worker-pool-decoder.js';
import { CryptConfig } from '../../crypto/crypt-config.js';
import { childProcessEnv, getPassphrase } from '../../crypto/passphrase.js';
import { PbsfsError, UsageError, fromSystemError, isPbsfsError } from '../../errors.js';
import { HarvestBudget } from '../../pxar/metadata-harvest.js';
import { checkMountpoint, mountCore, type MountedFs } from '../../fuse/mount.js';
import { Snapshot } from '../../snapshot/snapshot.js';
import { formatNamespace, formatSnapshotRef, parseNamespace, parseSnapshotRef, type Namespace, type SnapshotRef } from '../../store/backup-ref.js';
import type { ChunkStore } from '../../store/chunk-store.js';
import { locateRepository, openRepository } from '../../store/open-repository.js';
import { parsePbsAddress } from '../../store/pbs/address.js';
import { pinnedFingerprint, secretReader } from '../../store/pbs/credentials.js';
import type { Repository } from '../../store/repository.js';
import { parseSize, formatBytes, isAllZero } from '../../util/bytes.js';
import { VfsCore } from '../../vfs/core.js';
import { datastoreTree } from '../../vfs/datastore-tree.js';
import { archiveRoot, snapshotDir } from '../../vfs/snapshot-nodes.js';
import type { VfsNode } from '../../vfs/types.js';
import type { PxarTreeOptions } from '../../vfs/pxar-tree.js';
import { action, globalOptions, requireRepository } from '../context.js';
import { ALLOW_DAMAGED_HELP, ALLOW_DAMAGED_WARNING, damageReportLines } from '../damage-output.js';
import { DamageReport, formatDamageEntry } from '../../index/damage-report.js';
import { defaultCacheBytes } from '../../util/memory-share.js';
import { decodeThreadsSetting } from '../decode-threads.js';
import { KeySource } from '../snapshot-args.js';
import type { S3Options } from '../../store/s3-config.js';
import { existingDefaultKey, loadKeyFileArg } from '../key-file-arg.js';
import { openRepositoryArg } from '../open-repositories.js';
import { selectSnapshot } from '../snapshot-select.js';

/**
 * The mount process keeps one thread-pool thread blocked reading /dev/fuse and reads chunk files
 * through the pool too: give it room. Effective only before the pool's first use, so it is set
 * first thing in the command (and in the daemon child's environment).
 */
function widenThreadPool(): void {
  process.env.UV_THREADPOOL_SIZE ??= '16';
}

/**
 * How much V8 lets a heap grow past what survived its last full collection: 60% instead of the
 * default (up to 4x for a heap that allocates fast). A tree walk allocates ~250 MB of short-lived
 * objects around ~30 MiB of live ones, and V8 sized the main thread's heap at four times that.
 * 60% keeps most of the saving of 20% without its frequent full collections, at the default's
 * walk time (docs/performance.md). V8 flags are process-wide, so the decode threads get it too.
 * A smaller young generation (--max-semi-space-size) cost the walk more than it saved.
 */
function boundHeapGrowth(): void {
  setFlagsFromString('--heap-growing-percent=60');
}

/** Everything the mounting process needs; sent to a daemon child over a pipe. */
export interface MountPlan {
  repository: string;
  ns: string | undefined;
  keyfile: string | undefined;
  masterKeyfile: string | undefined;
  snapshot: string | undefined;
  archive: string | undefined;
  mountpoint: string;
  cacheBytes: number;
  /** Regular files larger than this are read with FOPEN_DIRECT_IO (--page-cache-max). */
  pageCacheMaxFileBytes?: number;
  readahead: number;
  allowOther: boolean;
  uid: number | undefined;
  gid: number | undefined;
  stats: boolean;
  debug: boolean;
  nlinkScan: 'auto' | 'scan' | 'off';
  /** Worker threads decoding chunks; 0 decodes on the main thread. */
  decodeThreads: number;
  /** --allow-damaged: unreadable chunks read as zeros (logged, reported at unmount), not EIO. */
  allowDamaged?: boolean;
  /** The decrypted --keyfile key (hex). */
  keyHex?: string;
  /** Passphrase of the --master-keyfile PEM. */
  masterPassphrase?: string;
  /** Endpoint, region and addressing of an s3:// repository. */
  s3?: S3Options;
  /** A PBS server's password or API token secret, read on the user's terminal. */
  serverSecret?: string;
  /** The pinned fingerprint of a PBS server's certificate. */
  fingerprint?: string;
}

interface MountCliOptions {
  cacheSize?: string;
  pageCacheMax: string;
  readahead: string;
  allowOther?: boolean;
  uid?: string;
  gid?: string;
  foreground?: boolean;
  stats?: boolean;
  logFile?: string;
  daemonChild?: boolean;
  allowDamaged?: boolean;
}

function nlinkScanSetting(): 'auto' | 'scan' | 'off' {
  const v = process.env.PBSFS_NLINK_SCAN ?? 'auto';
  if (v !== 'auto' && v !== 'scan' && v !== 'off') throw new UsageError(`PBSFS_NLINK_SCAN must be auto, scan or off, got ${JSON.stringify(v)}`);
  return v;
}

function parseId(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) throw new UsageError(`${what} must be a number from 0 to 4294967295, got ${JSON.stringify(v)}`);
  return Number(v);
}

/**
 * Keeps the decoded all-zero chunks of disk images (an image's unused space is one digest
 * repeated thousands of times) outside the LRU, so that streaming a large image never evicts and
 * re-decrypts them. A zero chunk is recognised by its tiny stored form and verified once; later
 * requests with byte-identical stored bytes get the pinned plaintext. At most 8 are kept (one
 * per chunk size and key in practice).
 */
export function pinZeroChunks(inner: ChunkDecoder): ChunkDecoder {
  const pinned = new Map<string, { raw: Buffer; plain: Buffer }>();
  return async (raw, job, dest) => {
    const key = job.digest.toString('hex');
    const hit = pinned.get(key);
    if (hit !== undefined && hit.raw.equals(raw)) return hit.plain;
    const plain = await inner(raw, job, dest);
    if (raw.length < 4096 && plain.length >= 65536 && pinned.size < 8 && isAllZero(plain)) {
      // A copy: `plain` may be the reader's arena memory, which is reused once evicted.
      pinned.set(key, { raw: Buffer.from(raw), plain: Buffer.alloc(plain.length) });
    }
    return plain;
  };
}

/** The usual chunk size of PBS backups (fixed-size images and the dynamic chunker's average). */
const CHUNK_SIZE_HINT = 4 * 1024 * 1024;

/**
 * How a mount divides `--cache-size` between its caches, so that the option bounds all of them:
 * a quarter for the metadata harvested from unified archives, an eighth (at most 16 MiB) for the
 * small reads of direct-I/O files, the rest for decoded chunks.
 */
export function cacheBudget(cacheBytes: number): { chunks: number; harvest: number; smallReads: number; listingPrefetch: number } {
  const harvest = Math.floor(cacheBytes / 4);
  const smallReads = Math.min(16 * 1024 * 1024, Math.floor(cacheBytes / 8));
  const chunks = cacheBytes - harvest - smallReads;
  // How far a listing fetches ahead (AccessorOptions.readdirPrefetchBytes): a quarter of the
  // chunk cache, at most 32 MiB. Listing the bench's /small (1,000 directories spread over 431 MB
  // of a unified archive), 3 interleaved runs each: 8 MiB 1.23-1.49 s, 16 MiB 1.21-1.25 s,
  // 32 MiB 1.17-1.22 s, 64 MiB 1.63-1.67 s (fetched chunks left the 80 MiB cache before use).
  return { chunks, harvest, smallReads, listingPrefetch: Math.min(32 * 1024 * 1024, Math.floor(chunks / 4)) };
}

/**
 * The read-ahead, in chunks, at most what half the chunk cache holds: chunks fetched further
 * ahead than the cache keeps were evicted before the reader reached them and fetched twice
 * (a 64 MiB image streamed through a 32 MiB cache: 22 fetches of its 17 chunks at read-ahead 4).
 */
export function readaheadWithin(readahead: number, chunkCacheBytes: number): number {
  return Math.min(readahead, Math.max(1, Math.floor(chunkCacheBytes / (2 * CHUNK_SIZE_HINT))));
}

/** A datastore path made absolute (the daemon runs in `/`); a server or bucket stays as given. */
function localPathsResolved(repo: string): string {
  const loc = locateRepository(repo);
  return loc.kind === 'local' ? resolve(loc.path) : repo;
}

/**
 * The chunk readers of this mount, one per chunk store and key (one cache bound for each). A
 * local datastore has one chunk store for all snapshots; a server has one per reader session.
 */
class Readers {
  private readonly byStore = new WeakMap<ChunkStore, Map<string, ChunkReader>>();
  /** Every reader made, for the counters (a reader lives as long as the mount). */
  private readonly all = new Set<ChunkReader>();
  private pool: WorkerPoolDecoder | undefined;
  constructor(
    private readonly cacheBytes: number,
    private readonly decodeThreads: number,
  ) {}
  /**
   * Chunk decoding off the thread that answers the kernel, once startDecodeThreads() has run.
   * Before that (opening the archive, answering INIT) chunks decode on this thread: its first
   * and last chunks decode faster here than behind the start-up of two workers competing for the
   * same cores (docs/performance.md, mount to ready).
   */
  private readonly decoder: ChunkDecoder = pinZeroChunks((raw, job, dest) =>
    this.pool === undefined ? inlineChunkDecoder(raw, job, dest) : this.pool.decoder(raw, job, dest),
  );
  /** Large encrypted chunks decode on two threads while they are read (see pipelined-decode.ts). */
  private readonly pipelined: PipelinedDecoder = (lease, job, dest) => this.pool?.pipelined?.(lease, job, dest);
  startDecodeThreads(): void {
    if (this.decodeThreads > 0) this.pool ??= new WorkerPoolDecoder({ threads: this.decodeThreads, inlineUntilReady: true });
    void (this.pool?.whenReady() ?? Promise.resolve()).then(() => this.markUp());
  }
  private markUp!: () => void;
  /** Settles once the mount is up and its decode threads take work (what background work waits for). */
  readonly up = new Promise<void>((resolve) => (this.markUp = resolve));
  async close(): Promise<void> {
    await this.pool?.close();
  }
  get(crypt: CryptConfig | undefined, store: ChunkStore): ChunkReader {
    const k = crypt ? crypt.fingerprint.toString('hex') : 'none';
    let byKey = this.byStore.get(store);
    if (!byKey) {
      byKey = new Map();
      this.byStore.set(store, byKey);
    }
    let r = byKey.get(k);
    if (!r) {
      r = new ChunkReader(store, {
        ...(crypt ? { crypt } : {}),
        cacheBytes: this.cacheBytes,
        // The mount releases what it holds as soon as a reply is written.
        arena: true,
        decoder: this.decoder,
        ...(this.decodeThreads >= 2 ? { pipelined: this.pipelined } : {}),
      });
      byKey.set(k, r);
      this.all.add(r);
    }
    return r;
  }
  stats(): Record<string, number> {
    const sum: Record<string, number> = {};
    for (const r of this.all) {
      for (const [k, v] of Object.entries(r.stats)) sum[k] = (sum[k] ?? 0) + v;
      sum.cachedBytes = (sum.cachedBytes ?? 0) + r.cachedBytes;
      sum.arenaBytes = (sum.arenaBytes ?? 0) + r.arenaBytes;
      sum.heldChunks = (sum.heldChunks ?? 0) + r.heldChunks;
    }
    return sum;
  }
}

interface BuiltRoot {
  root: VfsNode;
  source: string;
  readers: Readers;
  damage: DamageReport | undefined;
  budget: ReturnType<typeof cacheBudget>;
  repository: Repository;
}

async function buildRoot(plan: MountPlan): Promise<BuiltRoot> {
  // Each zero-filled range is logged as it happens (stderr: the terminal, or the daemon's log).
  const damage = plan.allowDamaged ? new DamageReport((e) => process.stderr.write(`pbsfs: damaged: ${formatDamageEntry(e)}\n`)) : undefined;
  const ds = await openRepository(plan.repository, {
    ...(plan.s3 ? { s3: plan.s3 } : {}),
    ...(plan.serverSecret !== undefined ? { secret: plan.serverSecret } : {}),
    ...(plan.fingerprint !== undefined ? { fingerprint: plan.fingerprint } : {}),
  });
  const ns: Namespace = parseNamespace(plan.ns ?? '');
  const budget = cacheBudget(plan.cacheBytes);
  const readers = new Readers(budget.chunks, plan.decodeThreads);
  const fileKey = plan.keyHex !== undefined ? CryptConfig.fromKey(Buffer.from(plan.keyHex, 'hex')) : undefined;
  let keySource: KeySource | undefined;
  if (plan.masterKeyfile !== undefined) {
    // KeySource asks getPassphrase, which reads this variable first; it lives in this process only
    // (every child we start gets an environment without it).
    if (plan.masterPassphrase !== undefined) process.env.PBS_ENCRYPTION_PASSWORD = plan.masterPassphrase;
    keySource = new KeySource({
      repository: plan.repository,
      ns: plan.ns,
      keyfile: undefined,
      masterKeyfile: plan.masterKeyfile,
      outputFormat: 'text',
      debug: plan.debug,
    });
  }
  const keyFor = async (d: Repository, n: Namespace, ref: SnapshotRef): Promise<CryptConfig | undefined> =>
    fileKey ?? (keySource ? keySource.forSnapshot(d, n, ref) : undefined);
  const open = async (inNs: Namespace, ref: SnapshotRef): Promise<Snapshot> => {
    const crypt = await keyFor(ds, inNs, ref);
    return Snapshot.open(ds, inNs, ref, { ...(crypt ? { crypt } : {}), chunkReader: (store) => readers.get(crypt, store), ...(damage ? { damage } : {}) });
  };

  const tree: PxarTreeOptions = {
    nlink: plan.nlinkScan,
    nlinkScanEagerly: true,
    nlinkScanAfter: readers.up,
    harvest: new HarvestBudget(budget.harvest),
    readdirPrefetchBytes: budget.listingPrefetch,
  };
  if (plan.snapshot === undefined) {
    // Snapshots opened inside the tree share this mount's readers (and so its counters).
    const root = datastoreTree(ds, ns, { openSnapshot: (_d, inNs, ref) => open(inNs, ref), tree });
    return { root, source: `pbsfs:${plan.repository}`, readers, damage, budget, repository: ds };
  }
  const snapshot = await open(ns, parseSnapshotRef(plan.snapshot));
  if (plan.archive === undefined) return { root: snapshotDir(snapshot, tree), source: `pbsfs:${snapshot.refString}`, readers, damage, budget, repository: ds };
  // Opening the archive reads and verifies its index and its first and last chunks, so a wrong key
  // or a damaged index fails here, not on first access. The root is not listed yet: in a unified
  // archive its children's entries lie between their contents, spread over the whole archive,
  // and mount-to-ready must not grow with that (the first listing pays for it).
  const root = await archiveRoot(snapshot, plan.archive, tree);
  return { root, source: `pbsfs:${snapshot.refString}:${plan.archive}`, readers, damage, budget, repository: ds };
}

function formatStats(s: Record<string, unknown>): string {
  const flat: string[] = [];
  const walk = (o: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(o)) {
      if (v !== null && typeof v === 'object') walk(v as Record<string, unknown>, `${prefix}${k}.`);
      else flat.push(`${prefix}${k}: ${/bytes|Bytes/.test(k) && typeof v === 'number' ? `${v} (${formatBytes(v)})` : String(v)}`);
    }
  };
  walk(s, '');
  return flat.join('\n');
}

/**
 * Mounts according to `plan` in this process; calls `onReady` once the mount answers. Resolves
 * when the filesystem has been unmounted, with the number of chunks read as zeros
 * (--allow-damaged).
 */
export async function runMount(plan: MountPlan, onReady: () => void): Promise<{ damagedChunks: number }> {
  if (plan.allowDamaged) process.stderr.write(ALLOW_DAMAGED_WARNING);
  const built = await buildRoot(plan);
  const damage = built.damage;
  // Set once mounted; the stats closure below only runs while the mount answers requests.
  let mounted: MountedFs | undefined;
  const core = new VfsCore(built.root, {
    ...(plan.uid !== undefined ? { uid: plan.uid } : {}),
    ...(plan.gid !== undefined ? { gid: plan.gid } : {}),
    readahead: readaheadWithin(plan.readahead, built.budget.chunks),
    dropBehindFileBytes: built.budget.chunks,
    stats: () => ({
      cacheBytes: plan.cacheBytes,
      ...built.readers.stats(),
      ...(mounted !== undefined ? { smallReadCache: mounted.pageCacheStats() } : {}),
      ...(damage !== undefined ? { damagedChunks: damage.count, damagedBytes: damage.bytes } : {}),
    }),
  });
  // Signals are handled from before the kernel mount on: the mount answers (and a user or script
  // may send SIGTERM) a moment before mountCore returns, and the default action would then kill
  // the process and leave a stale mount behind.
  let stopping = false;
  const unmount = (fs: MountedFs): void => {
    void fs.unmount(false).then(async (r) => {
      if (r === 'busy') {
        process.stderr.write(`pbsfs: ${plan.mountpoint} is busy (files are open); detaching it, it goes away once they are closed\n`);
        await fs.unmount(true);
      }
    });
  };
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    if (mounted !== undefined) unmount(mounted);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', () => undefined);
  let m: MountedFs;
  try {
    m = await mountCore(core, plan.mountpoint, {
      allowOther: plan.allowOther,
      source: built.source,
      ...(plan.pageCacheMaxFileBytes !== undefined ? { pageCacheMaxFileBytes: plan.pageCacheMaxFileBytes } : {}),
      smallReadCacheBytes: built.budget.smallReads,
    });
  } catch (e) {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await built.readers.close();
    await built.repository.close();
    throw e;
  }
  mounted = m;
  // A signal that came while mounting: unmount at once.
  if (stopping) unmount(m);
  built.readers.startDecodeThreads();
  onReady();
  await m.done;
  await built.readers.close();
  await built.repository.close();
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  if (plan.stats) process.stderr.write(`pbsfs: statistics for ${plan.mountpoint}\n${formatStats(core.statsSnapshot())}\n`);
  if (damage !== undefined) {
    const lines = damageReportLines(damage);
    process.stderr.write(
      lines.length > 0
        ? `pbsfs: damage report for ${plan.mountpoint}\n${lines.join('\n')}\n`
        : `pbsfs: damage report for ${plan.mountpoint}: no unreadable chunks were read\n`,
    );
  }
  return { damagedChunks: damage?.count ?? 0 };
}

/** The daemon child: plan from fd 3, outcome to fd 4. */
async function daemonChild(): Promise<void> {
  let plan: MountPlan;
  try {
    plan = JSON.parse(readFileSync(3, 'utf8')) as MountPlan;
  } catch (e) {
    process.exitCode = 1;
    return;
  } finally {
    try {
      closeSync(3);
    } catch {
      // already closed
    }
  }
  process.chdir('/');
  const report = (msg: object): void => {
    try {
      writeSync(4, JSON.stringify(msg) + '\n');
      closeSync(4);
    } catch {
      // the parent is gone
    }
  };
  try {
    await runMount(plan, () => {
      // The mount log (--log-file) says what the machine-sized default chose.
      process.stderr.write(`pbsfs: mounted at ${plan.mountpoint} (caches ${formatBytes(plan.cacheBytes)})\n`);
      report({ ok: true });
    });
  } catch (e) {
    const message = isPbsfsError(e) ? e.message : `internal error: ${e instanceof Error ? e.message : String(e)}`;
    report({ ok: false, message, exitCode: isPbsfsError(e) ? e.exitCode : 1 });
    process.exitCode = isPbsfsError(e) ? e.exitCode : 1;
    return;
  }
  process.exit(0);
}

class ChildFailed extends PbsfsError {
  constructor(
    message: string,
    private readonly code: number,
  ) {
    super('io', message);
  }
  override get exitCode(): number {
    return this.code;
  }
}

/** Starts the daemon child and waits for its outcome. */
async function daemonize(plan: MountPlan, logFile: string | undefined): Promise<void> {
  const script = fileURLToPath(new URL('../main.js', import.meta.url));
  const env = { ...childProcessEnv(), UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16' };
  // Runtime messages (read errors) go to --log-file, else to the terminal the mount was started
  // from. A non-terminal stderr (a pipe) is not inherited: a caller reading it to EOF would hang
  // for as long as the mount lives.
  let errTarget: 'inherit' | 'ignore' | number = process.stderr.isTTY ? 'inherit' : 'ignore';
  if (logFile !== undefined) {
    try {
      errTarget = openSync(logFile, 'a', 0o600);
    } catch (e) {
      throw fromSystemError(e, logFile, 'cannot open the log file');
    }
  }
  const child = spawn(process.execPath, [script, 'mount', '--daemon-child'], {
    detached: true,
    stdio: ['ignore', 'ignore', errTarget, 'pipe', 'pipe'],
    env,
    cwd: '/',
  });
  const planPipe = child.stdio[3] as NodeJS.WritableStream;
  const statusPipe = child.stdio[4] as NodeJS.ReadableStream;
  planPipe.end(JSON.stringify(plan));
  const outcome = await new Promise<{ ok: boolean; message?: string; exitCode?: number }>((resolveOutcome) => {
    let text = '';
    statusPipe.setEncoding('utf8');
    statusPipe.on('data', (d: string) => {
      text += d;
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        try {
          resolveOutcome(JSON.parse(text.slice(0, nl)) as { ok: boolean });
        } catch {
          resolveOutcome({ ok: false, message: 'the mount process sent a garbled status' });
        }
      }
    });
    child.on('exit', (code, signal) =>
      resolveOutcome({ ok: false, message: `the mount process exited (${signal ?? `status ${code}`}) before mounting`, exitCode: 1 }),
    );
    child.on('error', (e) => resolveOutcome({ ok: false, message: `cannot start the mount process: ${e.message}`, exitCode: 1 }));
  });
  (statusPipe as unknown as { destroy(): void }).destroy();
  if (typeof errTarget === 'number') closeSync(errTarget);
  child.unref();
  if (!outcome.ok) throw new ChildFailed(outcome.message ?? 'mount failed', outcome.exitCode ?? 1);
}

/** --keyfile, else (without --master-keyfile) the default key file if there is one. */
function resolveKeyfile(keyfile: string | undefined, masterKeyfile: string | undefined): string | undefined {
  if (keyfile !== undefined) return resolve(keyfile);
  return masterKeyfile === undefined ? existingDefaultKey() : undefined;
}

export function register(program: Command): void {
  program
    .command('mount')
    .description('mount a datastore, a snapshot or one archive read-only (FUSE: as root, or as a normal user through fusermount)')
    .argument('[args...]', '[SNAPSHOT [ARCHIVE]] MOUNTPOINT')
    .option('--cache-size <size>', 'memory for caches: decoded chunks, harvested metadata, small reads (bytes; suffixes K, M, G; default: an eighth of the available memory, 128M to 1G)')
    .option('--page-cache-max <size>', 'regular files larger than this bypass the kernel page cache and are read directly (faster streaming; small reads are cached by pbsfs)', '32M')
    .option('--readahead <n>', 'chunks prefetched ahead of a sequential reader (0: off; at most half of what the chunk cache holds)', '4')
    .option('--allow-other', 'let other users access the mount (archived permissions still apply)')
    .option('--uid <uid>', 'show every file as owned by this uid')
    .option('--gid <gid>', 'show every file as owned by this gid')
    .option('--foreground', 'stay attached to the terminal (Ctrl-C unmounts)')
    .option('--stats', 'print chunk and read counters at unmount')
    .option('--log-file <path>', 'append the mount process\'s messages (read errors, statistics) to this file')
    .option('--allow-damaged', `${ALLOW_DAMAGED_HELP} (here: logged as they happen, the report printed or logged at unmount; reads of them no longer fail with EIO)`)
    .addOption(new Option('--daemon-child').hideHelp())
    .action(
      action(async (args: string[], opts: MountCliOptions, cmd: Command) => {
        widenThreadPool();
        boundHeapGrowth();
        if (opts.daemonChild) {
          await daemonChild();
          return;
        }
        const g = globalOptions(cmd);
        if (args.length < 1 || args.length > 3) throw new UsageError('usage: pbsfs mount [SNAPSHOT [ARCHIVE]] MOUNTPOINT');
        const mountpoint = checkMountpoint(args[args.length - 1]!);
        const snapshotArg = args.length >= 2 ? args[0] : undefined;
        // `latest`, a group or an `ns/...` prefix: resolved here, so the child gets one snapshot.
        let snapshot: string | undefined;
        let ns = g.ns;
        if (snapshotArg !== undefined) {
          const repo = await openRepositoryArg(g);
          const sel = await selectSnapshot(repo, parseNamespace(g.ns ?? ''), snapshotArg);
          snapshot = formatSnapshotRef(sel.ref);
          ns = sel.ns.length > 0 ? formatNamespace(sel.ns) : undefined;
        }
        const readahead = Number(opts.readahead);
        if (!Number.isInteger(readahead) || readahead < 0 || readahead > 64) {
          throw new UsageError(`--readahead must be a whole number from 0 to 64, got ${JSON.stringify(opts.readahead)}`);
        }
        const cacheBytes = opts.cacheSize !== undefined ? parseSize(opts.cacheSize) : defaultCacheBytes();
        const pageCacheMaxFileBytes = parseSize(opts.pageCacheMax);
        const plan: MountPlan = {
          repository: localPathsResolved(requireRepository(g)),
          ns,
          keyfile: resolveKeyfile(g.keyfile, g.masterKeyfile),
          masterKeyfile: g.masterKeyfile !== undefined ? resolve(g.masterKeyfile) : undefined,
          snapshot,
          archive: args.length === 3 ? args[1] : undefined,
          mountpoint,
          cacheBytes,
          pageCacheMaxFileBytes,
          readahead,
          allowOther: Boolean(opts.allowOther),
          uid: parseId(opts.uid, '--uid'),
          gid: parseId(opts.gid, '--gid'),
          stats: Boolean(opts.stats),
          debug: g.debug,
          nlinkScan: nlinkScanSetting(),
          // One core answers the kernel; the others decode (none on a single core).
          decodeThreads: decodeThreadsSetting((cores) => (cores >= 2 ? Math.min(4, Math.max(2, cores - 1)) : 0), true),
          ...(opts.allowDamaged ? { allowDamaged: true } : {}),
          ...(g.s3 ? { s3: g.s3 } : {}),
        };
        // The key is unlocked here, on the user's terminal; the child gets the result.
        if (plan.keyfile !== undefined) plan.keyHex = (await loadKeyFileArg(plan.keyfile)).crypt.encKey.toString('hex');
        if (plan.masterKeyfile !== undefined) plan.masterPassphrase = await getPassphrase({ prompt: 'Master Key Password: ' });
        const server = locateRepository(plan.repository);
        if (server.kind === 'pbs') {
          // Read here, where the terminal is: the daemon gets neither our environment's secrets nor a prompt.
          const { authId } = parsePbsAddress(server.spec);
          plan.serverSecret = await secretReader(authId, process.env, process.stdin.isTTY === true)();
          const fp = await pinnedFingerprint(g.fingerprint, process.env);
          if (fp !== undefined) plan.fingerprint = fp;
        }
        if (opts.foreground) {
          const r = await runMount(plan, () =>
            process.stderr.write(
              `pbsfs: mounted at ${plan.mountpoint} (caches ${formatBytes(plan.cacheBytes)}; Ctrl-C or pbsfs umount to unmount)\n`,
            ),
          );
          // As restore and cat: status 1 when data was zero-filled.
          if (r.damagedChunks > 0) process.exitCode = 1;
          return;
        }
        // The daemon writes the warning into its log; say it here too unless it shares our terminal.
        if (plan.allowDamaged && (opts.logFile !== undefined || !process.stderr.isTTY)) process.stderr.write(ALLOW_DAMAGED_WARNING);
        await daemonize(plan, opts.logFile !== undefined ? resolve(opts.logFile) : undefined);
      }),
    );
}
