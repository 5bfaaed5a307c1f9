/**
 * The benchmark dataset (issue 4): a 1 GiB incompressible file, a 256 MiB text-like file and
 * 100,000 small files in 1,000 directories, backed up encrypted by pbsfs's own writer. Built
 * once and cached under `.bench-data/` (gitignored); `scale` shrinks every size for smoke runs.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CryptConfig } from '../src/crypto/crypt-config.js';
import { createKeyConfig, serializeKeyConfig } from '../src/crypto/key-config.js';
import { runBackup } from '../src/writer/backup.js';
import { formatBackupTime } from '../src/store/backup-ref.js';

/** Bump when the layout changes so stale caches are rebuilt. */
const DATASET_VERSION = 1;
const MiB = 1024 * 1024;

export interface DatasetSpec {
  scale: number;
  /** Split pxar archive (.mpxar + .ppxar) instead of one .pxar. */
  split: boolean;
  bigFileBytes: number;
  textFileBytes: number;
  smallDirs: number;
  smallFilesPerDir: number;
}

export interface Dataset {
  version: number;
  spec: DatasetSpec;
  /** Datastore directory. */
  store: string;
  /** Unprotected key file (kdf none) the snapshot is encrypted with. */
  keyfile: string;
  /** `TYPE/ID/TIME`. */
  snapshot: string;
  /** Archive name as given to `pbsfs mount` (`root.pxar`). */
  archive: string;
  /** Paths inside the archive. */
  bigFile: string;
  textFile: string;
  smallFiles: string[];
  /** Every entry below the archive root (files and directories), as `find` counts them. */
  entries: number;
  /** Wall time the backup took, seconds (when this run built it). */
  backupSeconds?: number;
}

export function datasetSpec(scale: number, split = false): DatasetSpec {
  const s = Math.max(1e-4, scale);
  return {
    scale: s,
    split,
    bigFileBytes: Math.max(MiB, Math.round((1024 * MiB * s) / MiB) * MiB),
    textFileBytes: Math.max(MiB, Math.round((256 * MiB * s) / MiB) * MiB),
    smallDirs: Math.max(1, Math.round(1000 * s)),
    smallFilesPerDir: 100,
  };
}

/** xorshift32: fast, deterministic filler for the text and small files. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were ' +
  'backup chunk server archive snapshot restore index manifest datastore encrypted mount verify catalog directory file ' +
  'kernel block inode cache sequence random latency throughput compress decrypt digest signature fingerprint namespace'
).split(' ');

/** Text-like bytes: words, spaces and line breaks from a PRNG (compresses about 3:1). */
function textBlock(next: () => number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  let col = 0;
  while (pos < size) {
    const w = WORDS[next() % WORDS.length]!;
    pos += out.write(w, pos, 'latin1');
    col += w.length + 1;
    if (pos < size) out[pos++] = col > 72 ? 0x0a : 0x20;
    if (col > 72) col = 0;
  }
  return out;
}

function writeFileInBlocks(path: string, total: number, block: (size: number) => Buffer): void {
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < total; ) {
      const n = Math.min(4 * MiB, total - done);
      const b = block(n);
      let off = 0;
      while (off < n) off += writeSync(fd, b, off, n - off);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

function smallFileName(d: number, f: number): string {
  return `small/d${String(d).padStart(4, '0')}/f${String(f).padStart(3, '0')}.txt`;
}

/** Writes the source tree. Returns the number of entries below its root. */
function buildSourceTree(root: string, spec: DatasetSpec, log: (s: string) => void): number {
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'big'), { recursive: true });
  log(`  writing ${spec.bigFileBytes / MiB} MiB incompressible file`);
  writeFileInBlocks(join(root, 'big', 'incompressible.bin'), spec.bigFileBytes, (n) => randomBytes(n));
  log(`  writing ${spec.textFileBytes / MiB} MiB text file`);
  const next = rng(0x9e3779b9);
  writeFileInBlocks(join(root, 'big', 'text.txt'), spec.textFileBytes, (n) => textBlock(next, n));
  log(`  writing ${spec.smallDirs * spec.smallFilesPerDir} small files in ${spec.smallDirs} directories`);
  let entries = 3; // big/, and its two files
  mkdirSync(join(root, 'small'));
  entries++;
  for (let d = 0; d < spec.smallDirs; d++) {
    mkdirSync(join(root, smallFileName(d, 0), '..'));
    entries++;
    for (let f = 0; f < spec.smallFilesPerDir; f++) {
      // 0..8 KiB, text-like; a few empty files as in real trees.
      const size = next() % 8193;
      writeFileSync(join(root, smallFileName(d, f)), size === 0 ? Buffer.alloc(0) : textBlock(next, size));
      entries++;
    }
  }
  return entries;
}

/** Returns the cached dataset for `scale`, building it (source tree, key, backup) if needed. */
export async function ensureDataset(dataDir: string, scale: number, split: boolean, log: (s: string) => void): Promise<Dataset> {
  const spec = datasetSpec(scale, split);
  const dir = join(dataDir, `dataset-scale-${spec.scale}${split ? '-split' : ''}`);
  const metaPath = join(dir, 'dataset.json');
  if (existsSync(metaPath)) {
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as Dataset;
    if (meta.version === DATASET_VERSION && existsSync(meta.store) && (meta.spec.split ?? false) === split) {
      log(`using cached dataset ${dir}`);
      return meta;
    }
  }
  log(`building the dataset in ${dir} (once; cached afterwards)`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const src = join(dir, 'src');
  const entries = buildSourceTree(src, spec, log);

  const key = randomBytes(32);
  const keyfile = join(dir, 'key.json');
  writeFileSync(keyfile, serializeKeyConfig(await createKeyConfig(key, { kdf: 'none' })) + '\n', { mode: 0o600 });
  const crypt = CryptConfig.fromKey(key);

  const store = join(dir, 'store');
  const backupTime = 1_700_000_000;
  log(`  backing up (encrypted${split ? ', split archive' : ''}) with the pbsfs writer`);
  const t0 = process.hrtime.bigint();
  const result = await runBackup({
    repository: store,
    backupType: 'host',
    backupId: 'bench',
    backupTime,
    crypt,
    source: src,
    archiveName: 'root',
    split,
    xattrs: false,
  });
  const backupSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  log(`  backup done in ${backupSeconds.toFixed(1)} s: ${result.snapshot}`);
  rmSync(src, { recursive: true, force: true }); // the datastore is what the bench reads

  const smallFiles: string[] = [];
  for (let d = 0; d < spec.smallDirs; d++) for (let f = 0; f < spec.smallFilesPerDir; f++) smallFiles.push(smallFileName(d, f));
  const meta: Dataset = {
    version: DATASET_VERSION,
    spec,
    store,
    keyfile,
    snapshot: `host/bench/${formatBackupTime(backupTime)}`,
    archive: 'root.pxar',
    bigFile: 'big/incompressible.bin',
    textFile: 'big/text.txt',
    smallFiles,
    entries,
    backupSeconds,
  };
  writeFileSync(metaPath, JSON.stringify(meta));
  return meta;
}
