/**
 * `--allow-damaged`: unreadable chunks of an index archive read as zeros of their exact length,
 * every such range is reported, and the exit status is 1; without the flag nothing changes.
 * Each fixture is a temp copy of the vector datastore; which snapshot, archive and chunk to damage
 * and every expected byte come from the vectors' JSON and files (holdout-safe).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, promises as fsp } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir } from 'tmp-promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChunkReader } from '../../src/chunks/chunk-reader.js';
import { DamageReport } from '../../src/index/damage-report.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { copyDatastore, type DatastoreCopy } from '../helpers/datastore-copy.js';
import { expectedSnapshots, splitSnapshotPath, type ExpectedChunk, type ExpectedSnapshot } from '../helpers/datastore-expected.js';
import { MountTracker } from '../helpers/mount-cli.js';
import { crc32 } from '../../src/util/crc32.js';
import { datastoreDir, keysDir, pxarDir } from '../helpers/paths.js';
import { errorLine, runCli } from './cli.js';

const snaps = expectedSnapshots();
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const chunkPath = (root: string, digest: string): string => join(root, '.chunks', digest.slice(0, 4), digest);
const WARNING = 'pbsfs: warning: --allow-damaged: unreadable chunks will read as zeros and be reported';

/** Unique-digest chunks (a deduplicated digest would damage more than one range). */
function uniqueChunks(chunks: ExpectedChunk[]): ExpectedChunk[] {
  return chunks.filter((c) => chunks.filter((d) => d.digest === c.digest).length === 1);
}

function withIndex(chunks: ExpectedChunk[]): (ExpectedChunk & { i: number })[] {
  return chunks.map((c, i) => ({ ...c, i: c.index ?? i }));
}

/** Flips the last byte of a chunk file (its stored CRC then no longer matches). */
async function flipChunk(root: string, digest: string): Promise<void> {
  const p = chunkPath(root, digest);
  const raw = await readFile(p);
  raw[raw.length - 1]! ^= 0x01;
  await writeFile(p, raw);
}

function snapArgs(s: ExpectedSnapshot): { args: string[]; ref: string } {
  const { ns } = splitSnapshotPath(s.path);
  const ref = s.path.split('/').slice(ns.length * 2).join('/');
  return { args: ns.length > 0 ? ['--ns', ns.join('/')] : [], ref };
}

// ---- image archive: one chunk deleted, another flipped -------------------------------------

const imageSnap = snaps.find((s) => s.crypt_mode === 'none' && Object.keys(s.files).some((f) => f.endsWith('.fidx')))!;
const imageName = Object.keys(imageSnap.files).find((f) => f.endsWith('.fidx'))!;
const imageChunks = withIndex(imageSnap.files[imageName]!.chunks!);
/** Two chunks with distinct digests, non-zero ones first: the earlier one is deleted. */
const imageVictims = uniqueChunks(imageChunks)
  .map((c) => imageChunks.find((x) => x.digest === c.digest)!)
  .sort((a, b) => Number(a.all_zero ?? false) - Number(b.all_zero ?? false))
  .slice(0, 2)
  .sort((a, b) => a.i - b.i);
const [deleted, flipped] = imageVictims as [ExpectedChunk & { i: number }, ExpectedChunk & { i: number }];

describe('cat --allow-damaged on an image archive', () => {
  let ds: DatastoreCopy;
  let original: Buffer;
  const { args: nsArgs, ref } = snapArgs(imageSnap);

  beforeAll(async () => {
    expect(imageVictims.length).toBe(2);
    ds = await copyDatastore();
    await rm(chunkPath(ds.root, deleted.digest));
    await flipChunk(ds.root, flipped.digest);
    const r = await runCli(['--repository', datastoreDir, ...nsArgs, 'cat', ref, imageName]);
    expect(r.code, r.stderr).toBe(0);
    original = r.stdout;
  });
  afterAll(async () => ds?.cleanup());

  it('writes the original bytes with exactly the damaged chunk ranges zeroed, reports both, exits 1', async () => {
    const r = await runCli(['--repository', ds.root, ...nsArgs, 'cat', '--allow-damaged', ref, imageName]);
    expect(r.code, r.stderr).toBe(1);
    const expected = Buffer.from(original);
    for (const c of imageVictims) expected.fill(0, c.start, c.end);
    expect(r.stdout.length).toBe(original.length);
    expect(r.stdout.equals(expected)).toBe(true);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines[0]).toBe(WARNING);
    const del = lines.find((l) => l.includes(deleted.digest) && l.startsWith('pbsfs: damaged:'))!;
    expect(del).toContain(`chunk ${deleted.i} bytes ${deleted.start}..${deleted.end}`);
    expect(del).toMatch(/missing/);
    const flip = lines.find((l) => l.includes(flipped.digest) && l.startsWith('pbsfs: damaged:'))!;
    expect(flip).toContain(`chunk ${flipped.i} bytes ${flipped.start}..${flipped.end}`);
    expect(flip).toMatch(/CRC/);
    expect(lines[lines.length - 1]).toMatch(/^pbsfs: 2 unreadable chunks \(.*\) read as zeros$/);
  });

  it('reports as JSON lines on stderr with --output-format json (stdout stays the data)', async () => {
    const r = await runCli(['--repository', ds.root, ...nsArgs, '--output-format', 'json', 'cat', '--allow-damaged', ref, imageName]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout.length).toBe(original.length);
    const entries = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { damaged: Record<string, unknown> }).damaged);
    expect(entries.map((e) => [e.chunk, e.start, e.end, e.digest, e.archive])).toEqual(
      imageVictims.map((c) => [c.i, c.start, c.end, c.digest, imageName]),
    );
    expect(entries.map((e) => e.kind)).toEqual(['not-found', 'integrity']);
    for (const e of entries) expect(String(e.reason)).toContain(String(e.digest));
  });

  it('without the flag: the typed error of the first damaged chunk, as before', async () => {
    const r = await runCli(['--repository', ds.root, ...nsArgs, 'cat', ref, imageName]);
    expect(r.code).toBe(3); // chunk-missing
    const line = errorLine(r);
    expect(line).toContain(deleted.digest);
    expect(line).toContain(imageName);
    expect(line).not.toContain('allow-damaged');
    // Only good bytes were written before the failure.
    expect(original.subarray(0, r.stdout.length).equals(r.stdout)).toBe(true);
  });

  it('a clean archive with the flag: exact bytes, no report, exit 0', async () => {
    const r = await runCli(['--repository', datastoreDir, ...nsArgs, 'cat', '--allow-damaged', ref, imageName]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(original)).toBe(true);
    expect(r.stderr.trim()).toBe(WARNING);
  });
});

describe('cat --allow-damaged on an encrypted image (GCM tag failure)', () => {
  const encSnap = snaps.find((s) => s.crypt_mode === 'encrypt' && s.files[imageName] !== undefined);
  it('zero-fills the chunk that fails authentication and reports it as a crypto failure', async () => {
    expect(encSnap, 'an encrypted snapshot with the image archive').toBeDefined();
    const chunks = withIndex(encSnap!.files[imageName]!.chunks!);
    const bad = uniqueChunks(chunks).map((c) => chunks.find((x) => x.digest === c.digest)!)[0]!;
    const ds = await copyDatastore();
    try {
      const p = chunkPath(ds.root, bad.digest);
      const raw = await readFile(p);
      // Ciphertext bit flip with the CRC fixed up: only the GCM tag check can catch it.
      raw[raw.length >> 1]! ^= 0x40;
      raw.writeUInt32LE(crc32(raw.subarray(44)), 8);
      await writeFile(p, raw);
      const { args: nsArgs, ref } = snapArgs(encSnap!);
      const keyArgs = ['--keyfile', join(keysDir, 'key-none.json')];
      const original = await runCli(['--repository', datastoreDir, ...nsArgs, ...keyArgs, 'cat', ref, imageName]);
      expect(original.code, original.stderr).toBe(0);
      const r = await runCli(['--repository', ds.root, ...nsArgs, ...keyArgs, '--output-format', 'json', 'cat', '--allow-damaged', ref, imageName]);
      expect(r.code, r.stderr).toBe(1);
      const expected = Buffer.from(original.stdout);
      expected.fill(0, bad.start, bad.end);
      expect(r.stdout.equals(expected)).toBe(true);
      const entries = r.stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as { damaged: { digest: string; kind: string; chunk: number } }).damaged);
      expect(entries).toHaveLength(1);
      expect([entries[0]!.digest, entries[0]!.kind, entries[0]!.chunk]).toEqual([bad.digest, 'crypto', bad.i]);
      const without = await runCli(['--repository', ds.root, ...nsArgs, ...keyArgs, 'cat', ref, imageName]);
      expect(without.code).toBe(2);
      expect(errorLine(without)).toContain(bad.digest);
    } finally {
      await ds.cleanup();
    }
  });
});

// ---- split pxar archive -------------------------------------------------------------------

interface ListingEntry {
  kind: string;
  path_hex: string;
  size?: number;
  payload_offset?: number;
  sha256?: string;
}

const splitSnap = snaps.find((s) => Object.keys(s.files).some((f) => f.endsWith('.ppxar.didx')))!;
const payloadName = Object.keys(splitSnap.files).find((f) => f.endsWith('.ppxar.didx'))!;
const metaName = Object.keys(splitSnap.files).find((f) => f.endsWith('.mpxar.didx'))!;
const label = payloadName.replace(/\.ppxar\.didx$/, '');
const listing = JSON.parse(readFileSync(join(pxarDir, 'archive-v2.listing.json'), 'utf8')) as ListingEntry[];
const files = listing.filter((e) => e.kind === 'file');
const payloadChunks = withIndex(splitSnap.files[payloadName]!.chunks!);
const contentRange = (f: ListingEntry): [number, number] => [f.payload_offset! + 16, f.payload_offset! + 16 + f.size!];
const overlaps = (f: ListingEntry, c: ExpectedChunk): boolean => {
  const [s, e] = contentRange(f);
  return s < c.end && c.start < e;
};
/** The payload chunk (unique digest) that touches the fewest files: the others stay exact. */
const payloadVictim = uniqueChunks(payloadChunks)
  .map((c) => payloadChunks.find((x) => x.digest === c.digest)!)
  .sort((a, b) => files.filter((f) => overlaps(f, a)).length - files.filter((f) => overlaps(f, b)).length)[0]!;

describe('restore --allow-damaged on a split pxar archive', () => {
  let ds: DatastoreCopy;
  const { args: nsArgs, ref } = snapArgs(splitSnap);
  /** The vectors' payload stream with the victim's range zeroed: what restore must produce. */
  let zeroedPayload: Buffer;

  beforeAll(async () => {
    ds = await copyDatastore();
    await flipChunk(ds.root, payloadVictim.digest);
    const ppxar = await readFile(join(pxarDir, 'archive-v2.ppxar'));
    expect(sha256(ppxar)).toBe(splitSnap.files[payloadName]!.archive_sha256);
    zeroedPayload = Buffer.from(ppxar);
    zeroedPayload.fill(0, payloadVictim.start, payloadVictim.end);
  });
  afterAll(async () => ds?.cleanup());

  it('restores every entry; files in the damaged range hold zeros there, all others are exact; JSON lists the damage', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const target = join(tmp.path, 'out');
      const r = await runCli(['--repository', ds.root, ...nsArgs, '--output-format', 'json', 'restore', '--allow-damaged', ref, `${label}.pxar`, target]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.split('\n')[0]).toBe(WARNING);
      const summary = JSON.parse(r.stdout.toString()) as {
        files: number;
        damaged: { archive: string; chunk: number; start: number; end: number; digest: string; reason: string; kind: string }[];
        damagedFiles: { path: string; start: number; end: number; archive: string; chunk: number }[];
      };
      expect(summary.damaged).toHaveLength(1);
      const d = summary.damaged[0]!;
      expect([d.archive, d.chunk, d.start, d.end, d.digest, d.kind]).toEqual([
        payloadName,
        payloadVictim.i,
        payloadVictim.start,
        payloadVictim.end,
        payloadVictim.digest,
        'integrity',
      ]);
      expect(d.reason).toMatch(/CRC/);
      let exact = 0;
      const hit: string[] = [];
      for (const f of files) {
        const rel = Buffer.from(f.path_hex, 'hex');
        const got = readFileSync(Buffer.concat([Buffer.from(target), rel]));
        if (overlaps(f, payloadVictim) && f.size! > 0) {
          const [s, e] = contentRange(f);
          expect(got.equals(zeroedPayload.subarray(s, e)), rel.toString()).toBe(true);
          hit.push(Buffer.concat([Buffer.from(target), rel]).toString());
        } else {
          expect(sha256(got), rel.toString()).toBe(f.sha256);
          exact++;
        }
      }
      expect(hit.length).toBeGreaterThan(0);
      expect(exact + hit.length).toBe(files.length);
      // Each hit file is listed with the part of it that is zeros.
      expect(summary.damagedFiles.map((x) => x.path).sort()).toEqual(hit.sort());
      for (const x of summary.damagedFiles) {
        const f = files.find((y) => Buffer.concat([Buffer.from(target), Buffer.from(y.path_hex, 'hex')]).toString() === x.path)!;
        const [s] = contentRange(f);
        expect([x.start, x.end]).toEqual([Math.max(payloadVictim.start, s) - s, Math.min(payloadVictim.end, s + f.size!) - s]);
        expect([x.archive, x.chunk]).toEqual([payloadName, payloadVictim.i]);
      }
    } finally {
      await tmp.cleanup();
    }
  });

  it('text mode: the damaged files and the report on stderr, summary on stdout, exit 1', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const target = join(tmp.path, 'out');
      const r = await runCli(['--repository', ds.root, ...nsArgs, 'restore', '--allow-damaged', ref, `${label}.pxar`, target]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stdout.toString()).toMatch(/^restored /);
      expect(r.stderr).toContain(`pbsfs: damaged: ${splitSnap.path}/${payloadName}: chunk ${payloadVictim.i} bytes ${payloadVictim.start}..${payloadVictim.end} (digest ${payloadVictim.digest})`);
      expect(r.stderr).toMatch(/pbsfs: damaged file: .* are zeros/);
    } finally {
      await tmp.cleanup();
    }
  });

  it('without the flag: the typed integrity error, exit 3', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const r = await runCli(['--repository', ds.root, ...nsArgs, 'restore', ref, `${label}.pxar`, join(tmp.path, 'out')]);
      expect(r.code).toBe(3);
      expect(errorLine(r)).toContain(payloadVictim.digest);
    } finally {
      await tmp.cleanup();
    }
  });

  it('cat ARCHIVE PATH --allow-damaged: a file in the damaged range comes out with zeros there, exit 1', async () => {
    const f = files.filter((x) => overlaps(x, payloadVictim) && x.size! > 0).sort((a, b) => b.size! - a.size!)[0]!;
    const path = Buffer.from(f.path_hex, 'hex').toString();
    const r = await runCli(['--repository', ds.root, ...nsArgs, 'cat', '--allow-damaged', ref, `${label}.pxar`, path]);
    expect(r.code, r.stderr).toBe(1);
    const [s, e] = contentRange(f);
    expect(r.stdout.equals(zeroedPayload.subarray(s, e))).toBe(true);
    expect(r.stderr).toContain(payloadVictim.digest);
  });
});

describe('restore --allow-damaged with damaged archive metadata', () => {
  let ds: DatastoreCopy;
  const { args: nsArgs, ref } = snapArgs(splitSnap);
  /** The first metadata chunk: it holds the archive's start, which zeros cannot stand for. */
  const metaVictim = withIndex(splitSnap.files[metaName]!.chunks!)[0]!;

  beforeAll(async () => {
    ds = await copyDatastore();
    await rm(chunkPath(ds.root, metaVictim.digest));
  });
  afterAll(async () => ds?.cleanup());

  it('fails with a typed format error (exit 3) that mentions the zero-filled chunks, after the report', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const r = await runCli(['--repository', ds.root, ...nsArgs, 'restore', '--allow-damaged', ref, `${label}.pxar`, join(tmp.path, 'out')]);
      expect(r.code).toBe(3);
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      expect(lines[0]).toBe(WARNING);
      expect(lines.some((l) => l.startsWith('pbsfs: damaged:') && l.includes(metaVictim.digest) && l.includes(metaName))).toBe(true);
      const last = lines[lines.length - 1]!;
      expect(last).toContain(metaName);
      expect(last).toMatch(/--allow-damaged read 1 unreadable chunk as zeros/);
      expect(last).not.toMatch(/internal error|\bat .*\.js/);
    } finally {
      await tmp.cleanup();
    }
  });
});

// ---- library level ------------------------------------------------------------------------

describe('IndexReadAt with a damage report', () => {
  let ds: DatastoreCopy;
  beforeAll(async () => {
    ds = await copyDatastore();
    await rm(chunkPath(ds.root, deleted.digest));
  });
  afterAll(async () => ds?.cleanup());

  it('zero-fills the exact chunk length, records once, never caches the zeros, and re-reads nothing', async () => {
    const store = await LocalDatastore.open(ds.root);
    const { ns, ref } = splitSnapshotPath(imageSnap.path);
    const reader = new ChunkReader(store.chunkStore);
    const seen: number[] = [];
    const damage = new DamageReport((e) => seen.push(e.chunk));
    const snap = await Snapshot.open(store, ns, ref, { chunkReader: reader, damage });
    const { readAt } = await snap.openIndex(imageName);
    const z = await readAt.chunk(deleted.i);
    expect(z.length).toBe(deleted.end - deleted.start);
    expect(z.equals(Buffer.alloc(z.length))).toBe(true);
    expect(reader.cachedBytes).toBe(0);
    const fetched = reader.stats.cacheMisses;
    const again = await readAt.readAt(deleted.start, deleted.end - deleted.start);
    expect(again.equals(z)).toBe(true);
    expect(reader.stats.cacheMisses).toBe(fetched);
    expect(seen).toEqual([deleted.i]);
    expect(damage.count).toBe(1);
    expect(damage.bytes).toBe(deleted.end - deleted.start);
    expect(readAt.zeroFilled(deleted.start, 1)).toBe(true);
    expect(readAt.zeroFilled(deleted.end, 1)).toBe(false);
    // Without a report the same snapshot fails as before.
    const plain = await Snapshot.open(store, ns, ref, { chunkReader: reader });
    await expect((await plain.openIndex(imageName)).readAt.chunk(deleted.i)).rejects.toThrow(deleted.digest);
  });

  it('does not zero-fill errors that say nothing about the chunk (bugs, permission errors)', async () => {
    const store = await LocalDatastore.open(ds.root);
    const { ns, ref } = splitSnapshotPath(imageSnap.path);
    const damage = new DamageReport();
    const other = imageChunks.find((c) => c.digest !== deleted.digest && c.digest !== flipped.digest) ?? flipped;
    const failing = new ChunkReader({
      name: 'broken',
      get: async () => {
        throw new TypeError('a bug');
      },
    });
    const snap = await Snapshot.open(store, ns, ref, { chunkReader: failing, damage });
    await expect((await snap.openIndex(imageName)).readAt.chunk(other.i)).rejects.toThrow('a bug');
    expect(damage.count).toBe(0);
  });
});

// ---- mount ----------------------------------------------------------------------------------

describe('mount --allow-damaged', () => {
  const tracker = new MountTracker();
  afterEach(() => tracker.cleanup());
  afterAll(() => tracker.cleanup());

  it('reads a damaged image range as zeros (not EIO), the rest exact; logs the chunk; reports at unmount', async () => {
    const ds = await copyDatastore();
    try {
      await flipChunk(ds.root, deleted.digest);
      const { args: nsArgs, ref } = snapArgs(imageSnap);
      const original = (await runCli(['--repository', datastoreDir, ...nsArgs, 'cat', ref, imageName])).stdout;
      const mp = tracker.mountpoint();
      const m = await tracker.foreground(['--repository', ds.root, ...nsArgs, 'mount', '--foreground', '--allow-damaged', ref, mp]);
      const img = join(mp, imageName.replace(/\.fidx$/, ''));
      const fh = await fsp.open(img, 'r');
      try {
        const readRange = async (off: number, len: number): Promise<Buffer> => {
          const buf = Buffer.alloc(len);
          const { bytesRead } = await fh.read(buf, 0, len, off);
          return buf.subarray(0, bytesRead);
        };
        const len = Math.min(200000, deleted.end - deleted.start);
        const zeros = await readRange(deleted.start + 10, len);
        expect(zeros.equals(Buffer.alloc(len))).toBe(true);
        // A range straddling into the next chunk: zeros, then the true bytes.
        if (deleted.end < original.length) {
          const across = await readRange(deleted.end - 100, 300);
          expect(across.subarray(0, 100).equals(Buffer.alloc(100))).toBe(true);
          expect(across.subarray(100).equals(original.subarray(deleted.end, deleted.end + across.length - 100))).toBe(true);
        }
        const whole = await fsp.readFile(img);
        const expected = Buffer.from(original);
        expected.fill(0, deleted.start, deleted.end);
        expect(whole.equals(expected)).toBe(true);
      } finally {
        await fh.close();
      }
      const stats = JSON.parse(
        spawnSync('getfattr', ['--only-values', '-n', 'user.pbsfs.stats', '--absolute-names', mp], { encoding: 'utf8' }).stdout,
      ) as { damagedChunks: number };
      expect(stats.damagedChunks).toBe(1);
      const live = m.stderr();
      expect(live).toContain(WARNING);
      expect(live).toMatch(new RegExp(`pbsfs: damaged: .*${imageName}: chunk ${deleted.i} .*${deleted.digest}`));
      expect(live).not.toContain('read error');
      // Unmount: the process prints the report and exits 1 (data was zero-filled).
      const exited = new Promise<number | null>((resolve) => m.child.on('exit', (code) => resolve(code)));
      expect(spawnSync('fusermount', ['-u', mp]).status).toBe(0);
      expect(await exited).toBe(1);
      expect(m.stderr()).toMatch(/damage report for .*\n.*pbsfs: damaged: .*chunk/);
      expect(m.stderr()).toContain('pbsfs: 1 unreadable chunk');
    } finally {
      tracker.cleanup();
      await ds.cleanup();
    }
  });
});
