/**
 * `npm run bench`: end-to-end figures for the FUSE mount (issue 4, "Benchmark"). Not a test:
 * it prints a table and writes JSON (`.bench-data/results.json`), with the issue's targets
 * alongside for reference.
 *
 *   node dist/bench/run.js [--scale S] [--split] [--data-dir DIR] [--cache-size SIZE] [--out FILE]
 *
 * The dataset (bench/dataset.ts) is built once with pbsfs's own writer and cached. Each "cold"
 * measurement runs on a fresh `pbsfs mount --foreground` process after dropping the kernel's
 * caches (when permitted: `echo 3 > /proc/sys/vm/drop_caches`); the mount process's peak RSS
 * comes from /proc/PID/status (VmHWM).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDataset, type Dataset } from './dataset.js';
import { loadKeyFile } from '../src/crypto/key-config.js';
import { ChunkReader } from '../src/chunks/chunk-reader.js';
import { PxarAccessor } from '../src/pxar/accessor.js';
import { ContentReader } from '../src/pxar/content.js';
import { Snapshot } from '../src/snapshot/snapshot.js';
import { parseSnapshotRef } from '../src/store/backup-ref.js';
import { LocalDatastore } from '../src/store/local-datastore.js';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/bench/run.js -> project root. */
const projectRoot = resolve(here, '..', '..');
const cli = join(projectRoot, 'dist', 'src', 'cli', 'main.js');
const MiB = 1024 * 1024;

interface Args {
  scale: number;
  dataDir: string;
  cacheSize: string;
  out: string;
  randomReads: number;
  smallFileReads: number;
  split: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    scale: 1,
    dataDir: join(projectRoot, '.bench-data'),
    cacheSize: '128M',
    out: '',
    randomReads: 1000,
    smallFileReads: 1000,
    split: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = argv[i + 1];
    const need = (): string => {
      if (v === undefined) throw new Error(`${k} needs a value`);
      i++;
      return v;
    };
    if (k === '--scale') a.scale = Number(need());
    else if (k === '--data-dir') a.dataDir = resolve(need());
    else if (k === '--cache-size') a.cacheSize = need();
    else if (k === '--out') a.out = resolve(need());
    else if (k === '--random-reads') a.randomReads = Number(need());
    else if (k === '--small-files') a.smallFileReads = Number(need());
    else if (k === '--split') a.split = true;
    else if (k === '--help' || k === '-h') {
      process.stdout.write('usage: node dist/bench/run.js [--scale S] [--split] [--data-dir DIR] [--cache-size 128M] [--out FILE] [--random-reads N] [--small-files N]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${k}`);
  }
  if (!(a.scale > 0)) throw new Error('--scale must be a positive number');
  if (a.out === '') a.out = join(a.dataDir, a.split ? 'results-split.json' : 'results.json');
  return a;
}

const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Deterministic PRNG so runs pick the same offsets and files. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

let dropCachesWorks: boolean | undefined;
/** Drops the page cache, dentries and inodes, if this process may. */
function dropCaches(): boolean {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    dropCachesWorks = true;
  } catch {
    dropCachesWorks = false;
  }
  return dropCachesWorks;
}

interface Mount {
  mountpoint: string;
  child: ChildProcess;
  readyMs: number;
  stderr: string[];
}

function isMounted(mp: string): boolean {
  try {
    return statSync(mp).dev !== statSync(dirname(mp)).dev;
  } catch {
    return false;
  }
}

/** Starts `pbsfs mount --foreground` and waits until the mount answers. */
async function mount(ds: Dataset, mp: string, cacheSize: string): Promise<Mount> {
  const args = [
    cli,
    '--repository',
    ds.store,
    '--keyfile',
    ds.keyfile,
    'mount',
    '--foreground',
    '--cache-size',
    cacheSize,
    ds.snapshot,
    ds.archive,
    mp,
  ];
  const t0 = nowMs();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr: string[] = [];
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  for (;;) {
    if (isMounted(mp)) break;
    if (exited !== undefined) throw new Error(`pbsfs mount exited (${exited}) before the mount was ready: ${stderr.join('').trim()}`);
    if (nowMs() - t0 > 60_000) {
      child.kill('SIGKILL');
      throw new Error('pbsfs mount did not become ready within 60 s');
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  // The mount point answers stat; make sure the root directory is readable too.
  statSync(join(mp, '.'));
  return { mountpoint: mp, child, readyMs: nowMs() - t0, stderr };
}

/** Peak resident set size of the mount process, bytes (VmHWM). */
function peakRss(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function unmount(m: Mount): Promise<void> {
  const exited = new Promise<void>((r) => {
    if (m.child.exitCode !== null) r();
    else m.child.once('exit', () => r());
  });
  m.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    // The process did not unmount in time: detach the mount and stop it.
    spawnSync(process.execPath, [cli, 'umount', m.mountpoint], { stdio: 'ignore' });
    spawnSync('umount', ['-l', m.mountpoint], { stdio: 'ignore' });
    m.child.kill('SIGKILL');
  }, 10_000);
  await exited;
  clearTimeout(timer);
  if (isMounted(m.mountpoint)) spawnSync('umount', ['-l', m.mountpoint], { stdio: 'ignore' });
}

/** Runs a command, returns wall time (ms) and stdout. */
function timed(cmd: string, args: string[]): { ms: number; stdout: string } {
  const t0 = nowMs();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1024 * MiB });
  const ms = nowMs() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { ms, stdout: r.stdout };
}

/** Sequential read of a whole file in 1 MiB requests; MB/s (10^6 bytes/s). */
function sequentialRead(path: string): Throughput {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(MiB);
  let bytes = 0;
  const t0 = nowMs();
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, bytes);
      if (n === 0) break;
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  const seconds = (nowMs() - t0) / 1000;
  return { bytes, seconds, mbps: bytes / seconds / 1e6 };
}

interface Latency {
  count: number;
  p50Ms: number;
  p99Ms: number;
  totalMs: number;
}

function latencyOf(samples: number[]): Latency {
  const s = [...samples].sort((a, b) => a - b);
  return { count: s.length, p50Ms: percentile(s, 50), p99Ms: percentile(s, 99), totalMs: samples.reduce((a, b) => a + b, 0) };
}

/** `n` random 4 KiB reads at 4 KiB-aligned offsets of one open file; per-read latency. */
function randomReads(path: string, offsets: number[]): Latency {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(4096);
  const samples: number[] = [];
  try {
    for (const off of offsets) {
      const t0 = nowMs();
      readSync(fd, buf, 0, 4096, off);
      samples.push(nowMs() - t0);
    }
  } finally {
    closeSync(fd);
  }
  return latencyOf(samples);
}

/** Opens and reads each file completely; per-file latency. */
function readFiles(paths: string[]): Latency {
  const buf = Buffer.allocUnsafe(64 * 1024);
  const samples: number[] = [];
  for (const p of paths) {
    const t0 = nowMs();
    const fd = openSync(p, 'r');
    try {
      let pos = 0;
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, pos);
        if (n === 0) break;
        pos += n;
      }
    } finally {
      closeSync(fd);
    }
    samples.push(nowMs() - t0);
  }
  return latencyOf(samples);
}

/** Opens the dataset's archive in-process with a fresh (cold) chunk cache. */
async function openArchive(ds: Dataset, cacheBytes: number) {
  const { crypt } = await loadKeyFile(ds.keyfile);
  const store = await LocalDatastore.open(ds.store);
  const chunkReader = new ChunkReader(store.chunkStore, { crypt, cacheBytes });
  const snap = await Snapshot.open(store, [], parseSnapshotRef(ds.snapshot), { crypt, chunkReader });
  const layout = snap.pxarLayout(ds.archive);
  const main = await snap.openIndex(layout.kind === 'single' ? layout.archive : layout.meta);
  const payload = layout.kind === 'split' ? await snap.openIndex(layout.payload) : undefined;
  const acc = await PxarAccessor.open(main.readAt, payload?.readAt);
  return { store, main, payload, acc };
}

/** The big file read in-process through the library (PxarAccessor -> IndexReadAt), cold chunk cache. */
async function libraryRead(ds: Dataset, cacheBytes: number): Promise<Throughput> {
  const { acc } = await openArchive(ds, cacheBytes);
  const entry = await acc.requirePath(ds.bigFile);
  const size = entry.size ?? 0;
  const block = 4 * MiB;
  let bytes = 0;
  const t0 = nowMs();
  while (bytes < size) {
    const b = await acc.read(entry, bytes, Math.min(block, size - bytes));
    if (b.length === 0) break;
    bytes += b.length;
  }
  return throughput(bytes, nowMs() - t0);
}

/**
 * Baseline without pbsfs: the chunk files holding the big file, read whole in index order
 * (what any reader of this datastore must at least fetch from disk).
 */
async function chunkFilesRead(ds: Dataset): Promise<Throughput> {
  const { store, main, payload, acc } = await openArchive(ds, 0);
  const entry = await acc.resolve(await acc.requirePath(ds.bigFile));
  const range = await new ContentReader(main.readAt, payload?.readAt).locate(entry);
  const index = range.src === payload?.readAt ? payload.index : main.index;
  const first = index.chunkAt(range.start);
  const last = index.chunkAt(range.start + range.size - 1);
  let bytes = 0;
  const t0 = nowMs();
  for (let i = first; i <= last; i++) {
    const hex = index.digest(i).toString('hex');
    bytes += readFileSync(join(store.root, '.chunks', hex.slice(0, 4), hex)).length;
  }
  return throughput(bytes, nowMs() - t0);
}

interface Row {
  name: string;
  value: string;
  target: string;
  ok?: boolean;
}

interface Throughput {
  bytes: number;
  seconds: number;
  mbps: number;
}

function throughput(bytes: number, ms: number): Throughput {
  return { bytes, seconds: ms / 1000, mbps: bytes / (ms / 1000) / 1e6 };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  mkdirSync(args.dataDir, { recursive: true });
  const ds = await ensureDataset(args.dataDir, args.scale, args.split, log);
  const cacheBytes = parseCache(args.cacheSize);
  const mp = mkdtempSync(join(args.dataDir, 'mnt-'));
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
    loadAverageAtStart: loadavg(),
    dataset: { ...ds.spec, entries: ds.entries, snapshot: ds.snapshot, backupSeconds: ds.backupSeconds },
    cacheSize: args.cacheSize,
  };
  const rss: Record<string, number> = {};
  const withMount = async <T>(phase: string, fn: (m: Mount) => T | Promise<T>): Promise<T> => {
    const m = await mount(ds, mp, args.cacheSize);
    try {
      const r = await fn(m);
      const peak = peakRss(m.child.pid);
      if (peak !== undefined) rss[phase] = peak;
      return r;
    } finally {
      await unmount(m);
    }
  };

  try {
    results.nodeStartupMs = timed(process.execPath, ['-e', '0']).ms;

    // 1. Mount-to-ready, tree walks and du on a fresh, cold mount.
    dropCaches();
    const tree = await withMount('tree', (m) => {
      const find1 = timed('find', [m.mountpoint]);
      const find2 = timed('find', [m.mountpoint]);
      const du = timed('du', ['-s', m.mountpoint]);
      return { readyMs: m.readyMs, find1, find2, du, found: find1.stdout.split('\n').filter(Boolean).length - 1 };
    });
    log(`mount ready in ${tree.readyMs.toFixed(0)} ms; find ${tree.find1.ms.toFixed(0)} / ${tree.find2.ms.toFixed(0)} ms (${tree.found} entries); du ${tree.du.ms.toFixed(0)} ms`);
    results.mountReadyMs = tree.readyMs;
    results.findFirstMs = tree.find1.ms;
    results.findRepeatMs = tree.find2.ms;
    results.findEntries = tree.found;
    results.duMs = tree.du.ms;

    // 2. What the disk gives: the big file's chunk files, cold.
    dropCaches();
    results.chunkFilesCold = await chunkFilesRead(ds);
    log(`chunk files of the big file, cold: ${(results.chunkFilesCold as Throughput).mbps.toFixed(0)} MB/s`);

    // 3. Sequential read of the big file through FUSE: cold, then with the chunk files already in
    //    the page cache (fresh mount: pbsfs's own work without the disk).
    dropCaches();
    results.fuseSequential = await withMount('fuse-sequential-cold', (m) => sequentialRead(join(m.mountpoint, ds.bigFile)));
    results.fuseSequentialFilesCached = await withMount('fuse-sequential-files-cached', (m) => sequentialRead(join(m.mountpoint, ds.bigFile)));
    log(`FUSE sequential: ${(results.fuseSequential as Throughput).mbps.toFixed(0)} MB/s cold, ${(results.fuseSequentialFilesCached as Throughput).mbps.toFixed(0)} MB/s with chunk files cached`);

    // 4. The same through the library, in-process.
    dropCaches();
    results.librarySequential = await libraryRead(ds, cacheBytes);
    results.librarySequentialFilesCached = await libraryRead(ds, cacheBytes);
    log(`library sequential: ${(results.librarySequential as Throughput).mbps.toFixed(0)} MB/s cold, ${(results.librarySequentialFilesCached as Throughput).mbps.toFixed(0)} MB/s with chunk files cached`);

    // 5. Random 4 KiB reads of the big file: cold (fresh mount), then the same offsets warm.
    const r = rng(12345);
    const pages = Math.floor(ds.spec.bigFileBytes / 4096);
    const offsets = Array.from({ length: args.randomReads }, () => Math.floor(r() * pages) * 4096);
    dropCaches();
    const rand = await withMount('random-4k', (m) => {
      const file = join(m.mountpoint, ds.bigFile);
      return { cold: randomReads(file, offsets), warm: randomReads(file, offsets) };
    });
    log(`random 4 KiB: cold p50 ${rand.cold.p50Ms.toFixed(2)} ms p99 ${rand.cold.p99Ms.toFixed(2)} ms; warm p50 ${rand.warm.p50Ms.toFixed(3)} ms p99 ${rand.warm.p99Ms.toFixed(3)} ms`);
    results.random4k = rand;

    // 6. Random small files, cold.
    const pick = Array.from({ length: Math.min(args.smallFileReads, ds.smallFiles.length) }, () => ds.smallFiles[Math.floor(r() * ds.smallFiles.length)]!);
    dropCaches();
    const small = await withMount('small-files', (m) => readFiles(pick.map((p) => join(m.mountpoint, p))));
    log(`small files: p50 ${small.p50Ms.toFixed(2)} ms p99 ${small.p99Ms.toFixed(2)} ms, ${small.totalMs.toFixed(0)} ms total`);
    results.smallFiles = small;

    results.loadAverageAtEnd = loadavg();
    results.peakRssByPhase = rss;
    results.peakRssBytes = Math.max(...Object.values(rss));
    results.dropCaches = dropCachesWorks === true;
  } finally {
    if (isMounted(mp)) spawnSync('umount', ['-l', mp], { stdio: 'ignore' });
    try {
      rmdirSync(mp);
    } catch {
      // left behind only if something still holds it
    }
  }

  writeFileSync(args.out, JSON.stringify(results, null, 2) + '\n');
  printTable(results, cacheBytes);
  log(`results written to ${args.out}`);
}

function parseCache(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s.trim());
  if (!m) throw new Error(`--cache-size: not a size: ${s}`);
  const mult: Record<string, number> = { '': 1, K: 1024, M: MiB, G: 1024 * MiB };
  return Number(m[1]) * mult[(m[2] ?? '').toUpperCase()]!;
}

function printTable(r: Record<string, unknown>, cacheBytes: number): void {
  const num = (k: string): number => r[k] as number;
  const tp = (k: string): number => (r[k] as Throughput).mbps;
  const rand = r.random4k as { cold: Latency; warm: Latency };
  const small = r.smallFiles as Latency;
  const rss = num('peakRssBytes');
  const rows: Row[] = [
    { name: 'mount to ready (incl. Node startup)', value: `${num('mountReadyMs').toFixed(0)} ms (Node alone: ${num('nodeStartupMs').toFixed(0)} ms)`, target: '< 500 ms', ok: num('mountReadyMs') < 500 },
    { name: `first find (${num('findEntries')} entries)`, value: `${num('findFirstMs').toFixed(0)} ms`, target: '< 1500 ms', ok: num('findFirstMs') < 1500 },
    { name: 'repeated find', value: `${num('findRepeatMs').toFixed(0)} ms`, target: '< 300 ms', ok: num('findRepeatMs') < 300 },
    { name: 'du -s', value: `${num('duMs').toFixed(0)} ms`, target: '< 1000 ms', ok: num('duMs') < 1000 },
    { name: 'disk baseline: chunk files, cold', value: `${tp('chunkFilesCold').toFixed(0)} MB/s`, target: '-' },
    { name: 'sequential cold read, FUSE', value: `${tp('fuseSequential').toFixed(0)} MB/s`, target: '>= 500 MB/s', ok: tp('fuseSequential') >= 500 },
    { name: 'sequential read, FUSE, chunk files cached', value: `${tp('fuseSequentialFilesCached').toFixed(0)} MB/s`, target: '-' },
    { name: 'sequential cold read, library', value: `${tp('librarySequential').toFixed(0)} MB/s`, target: '-' },
    { name: 'sequential read, library, chunk files cached', value: `${tp('librarySequentialFilesCached').toFixed(0)} MB/s`, target: '-' },
    { name: 'random 4 KiB cold p50 / p99', value: `${rand.cold.p50Ms.toFixed(2)} / ${rand.cold.p99Ms.toFixed(2)} ms`, target: 'p50 < 5 ms', ok: rand.cold.p50Ms < 5 },
    { name: 'random 4 KiB warm p50 / p99', value: `${rand.warm.p50Ms.toFixed(3)} / ${rand.warm.p99Ms.toFixed(3)} ms`, target: 'p50 < 0.1 ms', ok: rand.warm.p50Ms < 0.1 },
    { name: `${small.count} random small files, cold, p50 / p99`, value: `${small.p50Ms.toFixed(2)} / ${small.p99Ms.toFixed(2)} ms (${(small.totalMs / 1000).toFixed(1)} s total)`, target: '-' },
    {
      name: 'peak RSS of the mount process (max of phases)',
      value: `${(rss / MiB).toFixed(1)} MiB`,
      target: `< ${(64 + cacheBytes / MiB).toFixed(0)} MiB (64 MiB + cache)`,
      ok: rss < 64 * MiB + cacheBytes,
    },
  ];
  const byPhase = r.peakRssByPhase as Record<string, number>;
  const cells = rows.map((x) => [x.name, x.value, x.target, x.ok === undefined ? '' : x.ok ? 'ok' : 'MISSED']);
  const w = [0, 0, 0];
  for (const c of [['Measurement', 'Value', 'Target', ''], ...cells]) c.slice(0, 3).forEach((v, i) => (w[i] = Math.max(w[i]!, v.length)));
  const line = (c: string[]): string => c.map((v, i) => (i < 3 ? v.padEnd(w[i]!) : v)).join('  ').trimEnd();
  const ds = r.dataset as { bigFileBytes: number; textFileBytes: number; smallDirs: number; smallFilesPerDir: number; split: boolean };
  process.stdout.write(
    [
      `pbsfs mount benchmark: ${ds.bigFileBytes / MiB} MiB incompressible + ${ds.textFileBytes / MiB} MiB text + ${ds.smallDirs * ds.smallFilesPerDir} small files in ${ds.smallDirs} dirs, encrypted, ${ds.split ? 'split (.mpxar/.ppxar)' : 'unified .pxar'} archive; cache ${(cacheBytes / MiB).toFixed(0)} MiB; caches dropped before cold runs: ${r.dropCaches ? 'yes' : 'no (not permitted)'}`,
      line(['Measurement', 'Value', 'Target', '']),
      ...cells.map(line),
      `load average at start / end: ${(r.loadAverageAtStart as number[])[0]!.toFixed(2)} / ${(r.loadAverageAtEnd as number[])[0]!.toFixed(2)} (other work on the machine skews the figures)`,
      `peak RSS by phase: ${Object.entries(byPhase)
        .map(([k, v]) => `${k} ${(v / MiB).toFixed(0)} MiB`)
        .join(', ')}`,
    ].join('\n') + '\n',
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
