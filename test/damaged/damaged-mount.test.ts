/**
 * The mount row of the damaged-datastore matrix (fixtures: test/damaged/fixtures.ts). Each fault
 * is applied to a temp copy of the vector datastore, which is then mounted through the CLI:
 * - a fault in one chunk of the archive: the snapshot mounts, and through it (O_DIRECT, so each
 *   read(2) is exactly one request for that range, with no kernel read-ahead around it)
 *   - every file whose contents lie in the damaged chunk fails with EIO, while the parts of it
 *     outside that chunk read byte-exact;
 *   - every file that needs nothing from the damaged chunk (its contents, its own entry, and the
 *     entries and goodbye tables of the directories above it) reads byte-exact;
 *   - the others (their directory metadata is damaged) give byte-exact data or EIO, nothing else;
 * - a fault that makes the snapshot or archive unopenable (manifest, index, key, passphrase):
 *   `pbsfs mount SNAPSHOT ARCHIVE MOUNTPOINT` fails like `pbsfs cat` does: the same exit code,
 *   one line naming the file, and nothing is mounted; in a mount of the whole datastore,
 *   entering the archive directory fails with the errno of that error class (EIO; a snapshot
 *   directory without a manifest is not listed: ENOENT) and the log names the file, except for a
 *   wrong passphrase, which fails the mount command itself (exit 2).
 * Disk images: a missing, CRC-broken or GCM-broken image chunk gives EIO for reads touching it
 * (also across the boundary into it), and the bytes on either side read exact.
 * The reference is read from the pristine vector datastore with the library.
 */
import { constants, readFileSync } from 'node:fs';
import { open as openFile, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import type { PxarEntry } from '../../src/pxar/types.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { copyDatastore, type DatastoreCopy } from '../helpers/datastore-copy.js';
import { MountTracker } from '../helpers/mount-cli.js';
import { datastoreDir } from '../helpers/paths.js';
import { containing, waitFor } from '../helpers/poll.js';
import { errorLine, runCli } from './cli.js';
import { FIXTURES, archive, chunkPath, chunks, damagedChunk, loadFingerprints, ns, nsArgs, plainKeyFile, ref, refText, snaps, victim, type Fixture } from './fixtures.js';
import { splitSnapshotPath } from '../helpers/datastore-expected.js';

/** The directory the archive appears as in a snapshot mount (`root.pxar.didx` -> `root.pxar`). */
const archiveDir = archive.replace(/\.didx$/, '');
const damaged = { start: damagedChunk.start, end: damagedChunk.end };

type Range = [number, number];
const overlaps = (r: Range): boolean => r[0] < damaged.end && damaged.start < r[1];

interface RefFile {
  /** Path below the archive root, raw bytes. */
  path: Buffer;
  data: Buffer;
  /** Archive position of the first content byte. */
  contentStart: number;
  /** Archive ranges a lookup and read of this file need (entries and goodbye tables on the path). */
  needs: Range[];
}

const refFiles: RefFile[] = [];
const tracker = new MountTracker();

/** Walks the pristine archive: every regular file with its contents and the ranges it needs. */
async function walk(acc: PxarAccessor, dir: PxarEntry, path: Buffer, inherited: Range[]): Promise<void> {
  const d = await acc.openDir(dir);
  const children = await acc.readdir(dir);
  const firstChild = Math.min(d.goodbyeStart, ...children.map((c) => c.filenameOffset));
  // This directory's own FILENAME + ENTRY (+ attributes), and its goodbye table with the tail.
  const needs: Range[] = [...inherited, [Math.max(0, dir.filenameOffset), firstChild], [d.goodbyeStart, d.end]];
  for (const c of children) {
    const p = path.length === 0 ? c.name : Buffer.concat([path, Buffer.from('/'), c.name]);
    if (c.kind === 'directory') await walk(acc, c, p, needs);
    else if (c.kind === 'file' && c.contentOffset !== undefined) {
      const data = await acc.read(c, 0, c.size);
      refFiles.push({ path: p, data, contentStart: c.contentOffset, needs: [...needs, [c.filenameOffset, c.contentOffset + c.size]] });
    }
  }
}

beforeAll(async () => {
  await loadFingerprints();
  const { crypt } = await loadKeyFile(plainKeyFile, async () => '');
  const snap = await Snapshot.open(await LocalDatastore.open(datastoreDir), ns, ref, { crypt });
  const { readAt } = await snap.openIndex(archive);
  const acc = await PxarAccessor.open(readAt);
  await walk(acc, acc.root(), Buffer.alloc(0), []);
  expect(refFiles.length).toBeGreaterThan(0);
});

afterEach(() => tracker.cleanup());
afterAll(() => tracker.cleanup());

/** O_DIRECT read of `length` bytes at `offset`, or the error code. */
async function readDirect(path: Buffer, offset: number, length: number): Promise<Buffer | string> {
  let fh;
  try {
    fh = await openFile(path, constants.O_RDONLY | constants.O_DIRECT);
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  } finally {
    await fh?.close();
  }
}

const describeResult = (r: Buffer | string, want: Buffer): string => (typeof r === 'string' ? r : r.equals(want) ? 'EXACT' : `WRONG (${r.length} bytes)`);

function cliArgs(root: string, f: Fixture): string[] {
  return ['--repository', root, '--keyfile', f.keyFile ?? plainKeyFile, ...nsArgs];
}

function env(f: Fixture): Record<string, string | undefined> {
  return f.passphrase !== undefined ? { PBS_ENCRYPTION_PASSWORD: f.passphrase } : {};
}

describe.each(FIXTURES.map((f) => [f.name, f] as const))('damaged datastore through the mount: %s', (_n, f) => {
  let copy: DatastoreCopy;
  beforeAll(async () => {
    copy = await copyDatastore();
    await f.damage(copy.root);
  });
  afterAll(async () => {
    await copy?.cleanup();
  });

  if (f.early) {
    it(`mount of the archive fails like cat: exit ${f.exit}, one line naming the file, nothing mounted`, async () => {
      const mp = tracker.mountpoint();
      const r = await runCli([...cliArgs(copy.root, f), 'mount', refText, archiveDir, mp], { env: env(f) });
      expect(r.code, r.stderr).toBe(f.exit);
      const line = errorLine(r);
      expect(line).toMatch(f.message);
      for (const n of f.names()) expect(line, `mount error does not name ${n}`).toContain(n);
      if (f.passphrase !== undefined) expect(line).not.toContain(f.passphrase);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${mp} `);
    });
    it('datastore mount: entering the snapshot fails with the errno of that error class, logged naming the file', async () => {
      const mp = tracker.mountpoint();
      const log = join(copy.root, '..', 'mount.log');
      const r = await runCli([...cliArgs(copy.root, f), 'mount', '--log-file', log, mp], { env: env(f) });
      if (f.passphrase !== undefined) {
        // The key is unlocked before anything is mounted: the datastore mount fails the same way.
        expect(r.code, r.stderr).toBe(f.exit);
        expect(errorLine(r)).toMatch(f.message);
        expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${mp} `);
        return;
      }
      expect(r.code, r.stderr).toBe(0);
      const snapDir = join(mp, victim.path);
      const errnoOf = async (p: Promise<unknown>): Promise<string> =>
        p.then(
          () => 'OK',
          (e: NodeJS.ErrnoException) => e.code ?? String(e),
        );
      const want = new f.error('probe').errno; // EIO for integrity/format/crypto, ENOENT for not-found
      if (want === 'ENOENT') {
        // A snapshot directory without a manifest is not a snapshot: not listed, not enterable.
        expect(await readdir(join(snapDir, '..'))).not.toContain(victim.path.split('/').pop());
        expect(await errnoOf(readdir(snapDir))).toBe('ENOENT');
        return;
      }
      // The archive directory (the manifest, key or index is what fails).
      expect(await errnoOf(readdir(join(snapDir, archiveDir)))).toBe(want);
      await waitFor(containing(() => readFileSync(log, 'utf8'), f.message), `a log line matching ${f.message}`);
      const lines = readFileSync(log, 'utf8').split('\n').filter((l) => f.message.test(l));
      expect(lines.length, readFileSync(log, 'utf8')).toBeGreaterThanOrEqual(1);
      for (const n of f.names()) expect(lines[0], `log line does not name ${n}`).toContain(n);
    });
    return;
  }

  it('files in the damaged chunk give EIO (their other parts read exact); files that need nothing from it read exact', async () => {
    const mp = tracker.mountpoint();
    const r = await runCli([...cliArgs(copy.root, f), 'mount', refText, mp], { env: { ...env(f), PBSFS_NLINK_SCAN: 'off' } });
    expect(r.code, r.stderr).toBe(0);
    const base = Buffer.from(join(mp, archiveDir) + '/');
    let affected = 0;
    let clean = 0;
    const wrong: string[] = [];
    for (const file of refFiles) {
      const path = Buffer.concat([base, file.path]);
      const name = file.path.toString();
      const contents: Range = [file.contentStart, file.contentStart + file.data.length];
      const whole = await readDirect(path, 0, file.data.length + 1);
      if (file.data.length > 0 && overlaps(contents)) {
        affected++;
        if (whole !== 'EIO') wrong.push(`${name} (contents in the damaged chunk): ${describeResult(whole, file.data)}, want EIO`);
        // The parts before and after the damaged chunk are still served exactly.
        const before = damaged.start - file.contentStart;
        if (before > 0) {
          const got = await readDirect(path, 0, before);
          if (!(got instanceof Buffer && got.equals(file.data.subarray(0, before)))) {
            wrong.push(`${name}: the ${before} bytes before the damaged chunk: ${describeResult(got, file.data.subarray(0, before))}`);
          }
        }
        const after = damaged.end - file.contentStart;
        if (after > 0 && after < file.data.length) {
          const got = await readDirect(path, after, file.data.length - after);
          if (!(got instanceof Buffer && got.equals(file.data.subarray(after)))) {
            wrong.push(`${name}: the bytes after the damaged chunk: ${describeResult(got, file.data.subarray(after))}`);
          }
        }
      } else if (!file.needs.some(overlaps)) {
        clean++;
        if (!(whole instanceof Buffer && whole.equals(file.data))) wrong.push(`${name} (needs nothing damaged): ${describeResult(whole, file.data)}`);
      } else if (!(whole === 'EIO' || (whole instanceof Buffer && whole.equals(file.data)))) {
        wrong.push(`${name} (directory metadata damaged): ${describeResult(whole, file.data)}, want EXACT or EIO`);
      }
    }
    expect(wrong).toEqual([]);
    // The fault hits file contents, and other files are checked too (vectors: 1 and 25 of 26).
    expect(affected).toBeGreaterThan(0);
    expect(clean).toBeGreaterThan(0);
  });
});

describe('damaged directory metadata through the mount', () => {
  it("a missing chunk holding the archive root's goodbye table: listing gives EIO with a log line, not an empty or absent directory", async () => {
    const copy = await copyDatastore();
    try {
      const last = chunks[chunks.length - 1]!;
      await rm(chunkPath(copy.root, last.digest));
      const log = join(copy.root, '..', 'mount.log');
      const mp = tracker.mountpoint();
      const r = await runCli(['--repository', copy.root, '--keyfile', plainKeyFile, ...nsArgs, 'mount', '--log-file', log, refText, mp]);
      expect(r.code, r.stderr).toBe(0);
      const code = await readdir(join(mp, archiveDir)).then(
        (names) => `listed ${names.length} names`,
        (e: NodeJS.ErrnoException) => e.code,
      );
      expect(code).toBe('EIO');
      await waitFor(containing(() => readFileSync(log, 'utf8'), last.digest), 'the log line naming the chunk');
    } finally {
      tracker.cleanup();
      await copy.cleanup();
    }
  });
});

describe('damaged disk-image chunks through the mount', () => {
  // The encrypted VM snapshot; a chunk with data whose digest occurs once, not the first.
  const vm = snaps.find((s) => s.crypt_mode === 'encrypt' && s.files['drive-scsi0.img.fidx'] !== undefined)!;
  const img = vm.files['drive-scsi0.img.fidx']!;
  const imgChunks = img.chunks!;
  const bad = imgChunks.find((c, i) => i > 0 && !c.all_zero && imgChunks.filter((d) => d.digest === c.digest).length === 1) ?? imgChunks[0]!;
  const vmRef = splitSnapshotPath(vm.path);
  const faults: [string, (raw: Buffer) => Buffer | undefined][] = [
    ['missing', () => undefined],
    ['CRC mismatch', (raw) => ((raw[raw.length - 1]! ^= 0x01), raw)],
    ['GCM tag mismatch', (raw) => ((raw[12 + 16 + 3]! ^= 0x01), raw)],
  ];

  it.each(faults)('%s: the range in that chunk gives EIO; the bytes around it read exact', async (_name, edit) => {
    expect(bad.start, 'the vectors have no image chunk after the first').toBeGreaterThanOrEqual(65536);
    const { crypt } = await loadKeyFile(plainKeyFile, async () => '');
    const snap = await Snapshot.open(await LocalDatastore.open(datastoreDir), vmRef.ns, vmRef.ref, { crypt });
    const { readAt } = await snap.openIndex('drive-scsi0.img.fidx');
    const copy = await copyDatastore();
    try {
      const p = chunkPath(copy.root, bad.digest);
      const changed = edit(await readFile(p));
      if (changed === undefined) await rm(p);
      else await writeFile(p, changed);
      const mp = tracker.mountpoint();
      const r = await runCli(['--repository', copy.root, '--keyfile', plainKeyFile, 'mount', vm.path, mp]);
      expect(r.code, r.stderr).toBe(0);
      const file = Buffer.from(join(mp, 'drive-scsi0.img'));
      expect(await readDirect(file, bad.start + 100, 4096)).toBe('EIO');
      // Across the boundary into the damaged chunk: the whole read fails, no partial bytes.
      expect(await readDirect(file, bad.start - 10, 4096)).toBe('EIO');
      const before = await readDirect(file, bad.start - 65536, 65536);
      expect(before instanceof Buffer && before.equals(await readAt.readAt(bad.start - 65536, 65536))).toBe(true);
      if (bad.end < img.image_size!) {
        const after = await readDirect(file, bad.end, 65536);
        expect(after instanceof Buffer && after.equals(await readAt.readAt(bad.end, Math.min(65536, img.image_size! - bad.end)))).toBe(true);
      }
    } finally {
      tracker.cleanup();
      await copy.cleanup();
    }
  });
});
