/**
 * `ls` and `cat SNAPSHOT ARCHIVE PATH` sit on the FUSE-free VFS (the tree a mount shows):
 * - the library seam (`openArchiveVfs`, `catPxarPath`) lists every directory and prints every
 *   file of both vector archives exactly as the upstream listing says;
 * - the CLI lists every directory of the split archive as the listing says (names, types, modes,
 *   owners, ns mtimes, link targets, devices);
 * - a multi-chunk file made by our writer comes out byte-exact, read in bounded pieces.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { dir } from 'tmp-promise';
import { describe, expect, it } from 'vitest';
import { catPxarPath, openArchiveVfs } from '../../src/cli/pxar-hooks.js';
import { OutputClosed } from '../../src/cli/stream-out.js';
import { CryptConfig } from '../../src/crypto/crypt-config.js';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { formatSnapshotRef, parseSnapshotRef } from '../../src/store/backup-ref.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { runBackup } from '../../src/writer/backup.js';
import { expectedSnapshots, splitSnapshotPath } from '../helpers/datastore-expected.js';
import { VECTOR_PASSPHRASE, datastoreDir, keysDir } from '../helpers/paths.js';
import { runCli, type CliResult } from '../helpers/mount-cli.js';
import { loadListing, type ListingEntry } from '../pxar/listing.js';

const snaps = expectedSnapshots();
const split = snaps.find((s) => 'root.mpxar.didx' in s.files && !s.namespace)!;
const unified = snaps.find((s) => 'root.pxar.didx' in s.files && s.crypt_mode === 'encrypt' && !s.namespace)!;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

class Collect extends Writable {
  readonly parts: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.parts.push(chunk);
    cb();
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

async function openVector(path: string): Promise<Snapshot> {
  const { ns, ref } = splitSnapshotPath(path);
  const { crypt } = await loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE);
  return Snapshot.open(await LocalDatastore.open(datastoreDir), ns, ref, { crypt });
}

/** Children of a listing directory (paths as raw bytes), sorted by name bytes. */
function childrenOf(listing: ListingEntry[], dirHex: string): ListingEntry[] {
  const prefix = Buffer.from(dirHex === '2f' ? '2f' : `${dirHex}2f`, 'hex');
  return listing
    .filter((e) => {
      const p = Buffer.from(e.path_hex, 'hex');
      return p.length > prefix.length && p.subarray(0, prefix.length).equals(prefix) && !p.subarray(prefix.length).includes(0x2f);
    })
    .sort((a, b) => Buffer.compare(Buffer.from(a.path_hex, 'hex'), Buffer.from(b.path_hex, 'hex')));
}

const nameOf = (e: ListingEntry): Buffer => {
  const p = Buffer.from(e.path_hex, 'hex');
  return p.subarray(p.lastIndexOf(0x2f) + 1);
};

describe('ls and cat PATH through the VFS (library seam)', () => {
  for (const [label, vec, which] of [
    ['split', split, 'v2'],
    ['unified, encrypted', unified, 'v1'],
  ] as const) {
    it(`${label}: every directory lists and every file prints as the listing says`, async () => {
      const listing = loadListing(which).filter((e) => e.kind !== 'version');
      const snapshot = await openVector(vec.path);
      const { core } = await openArchiveVfs(snapshot, 'root.pxar');
      let dirs = 0;
      let files = 0;
      for (const e of listing) {
        const path = Buffer.from(e.path_hex, 'hex');
        const node = (await core.lookupPath(path))!;
        expect(node, e.path).toBeDefined();
        if (e.kind === 'directory') {
          const names = ((await node.readdir!()) ?? []).map((c) => c.name.toString('hex'));
          expect(names, e.path).toEqual(childrenOf(listing, e.path_hex).map((c) => nameOf(c).toString('hex')));
          dirs++;
        } else if ((e.kind === 'file' || e.kind === 'hardlink') && Buffer.from(path.toString()).equals(path)) {
          // (A command line carries UTF-8 paths; non-UTF-8 names are covered by the listing above.)
          const out = new Collect();
          await catPxarPath({ snapshot, archive: 'root.pxar', path: path.toString(), out });
          const target = e.kind === 'hardlink' ? listing.find((x) => x.path === '/' + e.hardlink_target!.replace(/\0$/, ''))! : e;
          expect(sha(out.bytes()), e.path).toBe(target.sha256);
          if (e.kind === 'hardlink') expect(node.hardlinkTarget?.()?.toString()).toBe(e.hardlink_target!.replace(/\0$/, ''));
          files++;
        }
      }
      expect(dirs).toBeGreaterThan(3);
      expect(files).toBeGreaterThan(10);
    });
  }
});

const run = (args: string[], repo = datastoreDir): Promise<CliResult> => runCli(['--repository', repo, ...args]);

describe('ls through the CLI', () => {
  it('lists every directory of the split archive with the listing metadata (JSON)', async () => {
    const listing = loadListing('v2').filter((e) => e.kind !== 'version');
    const ref = formatSnapshotRef(splitSnapshotPath(split.path).ref);
    const dirs = listing.filter((e) => e.kind === 'directory' && /^[\x20-\x7e]+$/.test(e.path));
    expect(dirs.length).toBeGreaterThan(3);
    for (const d of dirs) {
      const r = await run(['--output-format', 'json', 'ls', ref, 'root.pxar', d.path]);
      expect(r.code, `${d.path}: ${r.stderr}`).toBe(0);
      const items = JSON.parse(r.stdout.toString()) as Record<string, unknown>[];
      const want = childrenOf(listing, d.path_hex);
      expect(items.map((i) => (i['name-hex'] as string | undefined) ?? Buffer.from(i.name as string).toString('hex'))).toEqual(
        want.map((c) => nameOf(c).toString('hex')),
      );
      items.forEach((item, i) => {
        const e = want[i]!;
        const where = e.path;
        expect(item.type, where).toBe(e.kind);
        if (e.kind === 'hardlink') {
          expect(item['hardlink-target'], where).toBe(e.hardlink_target!.replace(/\0$/, ''));
          return;
        }
        expect([item.mode, item.uid, item.gid], where).toEqual([e.mode_dec, e.uid, e.gid]);
        expect([item.mtime, item['mtime-nsec']], where).toEqual([e.mtime!.secs, e.mtime!.nanos]);
        if (e.kind === 'file') expect(item.size, where).toBe(e.size);
        if (e.kind === 'symlink') expect(item['link-target'], where).toBe(e.symlink_target!.replace(/\0$/, ''));
        if (e.kind === 'chardev' || e.kind === 'blockdev') {
          expect([item['device-major'], item['device-minor']], where).toEqual([e.device_major, e.device_minor]);
        }
      });
    }
  });
});

describe('cat PATH of a large file', () => {
  it('streams a multi-chunk file byte-exact (split and unified archives of our writer)', async () => {
    const tmp = await dir({ unsafeCleanup: true });
    try {
      const src = join(tmp.path, 'src');
      mkdirSync(join(src, 'sub'), { recursive: true });
      const big = randomBytes(9 * 1024 * 1024 + 12345); // several chunks, odd tail
      writeFileSync(join(src, 'sub', 'big.bin'), big);
      writeFileSync(join(src, 'small.txt'), 'small\n');
      const key = randomBytes(32);
      for (const splitArchive of [false, true]) {
        const repo = join(tmp.path, splitArchive ? 'store-split' : 'store');
        const r = runBackup({
          repository: repo,
          backupType: 'host',
          backupId: 'big',
          backupTime: 1_700_000_000,
          crypt: CryptConfig.fromKey(key),
          source: src,
          archiveName: 'root',
          split: splitArchive,
          xattrs: false,
          prefixDirs: 'lazy',
        });
        const snapshot = await Snapshot.open(await LocalDatastore.open(repo), [], parseSnapshotRef(r.snapshot), { crypt: CryptConfig.fromKey(key) });
        const out = new Collect();
        await catPxarPath({ snapshot, archive: 'root.pxar', path: '/sub/big.bin', out });
        expect(sha(out.bytes())).toBe(sha(big));
        // Pieces of at most 1 MiB: memory stays bounded whatever the file size.
        expect(Math.max(...out.parts.map((p) => p.length))).toBeLessThanOrEqual(1024 * 1024);
      }
    } finally {
      await tmp.cleanup();
    }
  });
});

describe('cat PATH refusals and a reader that goes away', () => {
  it('a symlink is not followed (usage error), a missing path is exit 4 naming archive and path', async () => {
    const listing = loadListing('v2').filter((e) => e.kind !== 'version');
    const ref = formatSnapshotRef(splitSnapshotPath(split.path).ref);
    const link = listing.find((e) => e.kind === 'symlink' && /^[\x20-\x7e]+$/.test(e.path))!;
    expect(link).toBeDefined();
    const l = await run(['cat', ref, 'root.pxar', link.path]);
    expect(l.code).toBe(2);
    expect(l.stderr).toMatch(/symlink, not a regular file/);
    expect(l.stdout.length).toBe(0);
    const m = await run(['cat', ref, 'root.pxar', '/no/such/file']);
    expect(m.code).toBe(4);
    expect(m.stderr).toContain('/no/such/file');
    expect(m.stderr).toContain('root.mpxar.didx');
  });

  it('stops with OutputClosed (which cat turns into a quiet exit) when the reader has gone away', async () => {
    const listing = loadListing('v2').filter((e) => e.kind === 'file' && (e.size ?? 0) > 0 && /^[\x20-\x7e]+$/.test(e.path));
    const snapshot = await openVector(split.path);
    const out = new Writable({ write: (_c, _e, cb) => cb() });
    out.destroy();
    await expect(catPxarPath({ snapshot, archive: 'root.pxar', path: listing[0]!.path, out })).rejects.toBeInstanceOf(OutputClosed);
  });
});
