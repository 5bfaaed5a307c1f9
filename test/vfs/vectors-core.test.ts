/**
 * The same comparison as test/fuse/mount-listing.test.ts, straight through the VfsCore inode API
 * (no kernel): every vector snapshot's file archive, opened as the mount opens it, equals the
 * upstream listing. Together the two suites show the core and the kernel mount agree.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { parseNamespace, parseSnapshotRef } from '../../src/store/backup-ref.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { ROOT_ID, VfsCore } from '../../src/vfs/core.js';
import { archiveRoot } from '../../src/vfs/snapshot-nodes.js';
import { coreDriver } from '../helpers/fs-driver.js';
import { datastoreDir, keysDir, pxarDir, vectorsDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';

interface Entry {
  kind: string;
  path_hex: string;
  mode_dec?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: { secs: number; nanos: number };
  sha256?: string;
  symlink_target?: string;
  hardlink_target?: string;
  device_major?: number;
  device_minor?: number;
  xattrs?: { name: string; value_hex: string }[];
  fcaps_hex?: string;
}
interface SnapshotVector {
  path: string;
  namespace?: string;
  files: Record<string, unknown>;
}

const expected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as { snapshots: SnapshotVector[] };
const hostSnapshots = expected.snapshots.filter((s) => Object.keys(s.files).some((f) => /\.(pxar|mpxar)\.didx$/.test(f)));

describe('entries listed by READDIRPLUS and rebuilt from their inode numbers', () => {
  // READDIRPLUS does not keep non-directory nodes; a later request rebuilds them. Messages about
  // them must still name the file by its path, not by its inode number.
  for (const s of hostSnapshots) {
    it(`${s.path}: a rebuilt entry answers by id and is named by its path`, async () => {
      const ds = await LocalDatastore.open(datastoreDir);
      const { crypt } = await loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE);
      const snap = await Snapshot.open(ds, parseNamespace(s.namespace ?? ''), parseSnapshotRef(s.path.replace(/^ns\/[^/]+\//, '')), { crypt });
      const core = new VfsCore(await archiveRoot(snap, 'root.pxar'));
      const listed: { path: string; nodeid: number; mode: number }[] = [];
      const walk = async (id: number, path: string): Promise<void> => {
        const dh = await core.opendir(id);
        const entries = await core.readdir(dh, 2, true, () => true);
        core.releasedir(dh);
        for (const e of entries) {
          const p = `${path}/${e.name.toString()}`; // as messages render names
          if ((e.attr.mode & 0o170000) === 0o040000) await walk(e.nodeid, p);
          else listed.push({ path: p, nodeid: e.nodeid, mode: e.attr.mode });
        }
      };
      await walk(ROOT_ID, '');
      const files = listed.filter((l) => (l.mode & 0o170000) === 0o100000);
      expect(files.length).toBeGreaterThan(3);
      // Only directories (and the root) were kept: every file below is rebuilt on request.
      const kept = (core.statsSnapshot().vfs as { inodes: number }).inodes;
      expect(kept).toBeLessThan(listed.length);
      for (const f of files) {
        expect((await core.getattr(f.nodeid)).mode, f.path).toBe(f.mode);
        const err = await core.readlink(f.nodeid).then(
          () => undefined,
          (e: Error) => e,
        );
        // Hardlinked names share one inode: the message may use any of them.
        const names = files.filter((g) => g.nodeid === f.nodeid).map((g) => g.path);
        expect(err?.message, f.path).toMatch(/: not a symbolic link$/);
        expect(names, f.path).toContain(err!.message.replace(/: not a symbolic link$/, ''));
      }
    });
  }
});

describe('vector archives through the VfsCore (no kernel)', () => {
  // A node cache of 16 forces the core to drop and rebuild nodes from their inode numbers all
  // the time (the path a mount of a huge archive takes); the answers must not change.
  for (const [s, nodeCacheSize] of hostSnapshots.flatMap((s) => [[s, undefined], [s, 16]] as const)) {
    it(`${s.path}${nodeCacheSize ? ` (node cache ${nodeCacheSize})` : ''}`, async () => {
      const split = Object.keys(s.files).some((f) => f.endsWith('.mpxar.didx'));
      const listing = (
        JSON.parse(readFileSync(join(pxarDir, split ? 'archive-v2.listing.json' : 'archive-v1.listing.json'), 'utf8')) as Entry[]
      ).filter((e) => e.kind !== 'version');
      const ds = await LocalDatastore.open(datastoreDir);
      const { crypt } = await loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE);
      const ns = parseNamespace(s.namespace ?? '');
      const ref = parseSnapshotRef(s.path.replace(/^ns\/[^/]+\//, ''));
      const snap = await Snapshot.open(ds, ns, ref, { crypt });
      const core = new VfsCore(await archiveRoot(snap, 'root.pxar'), nodeCacheSize ? { nodeCacheSize } : {});
      const d = coreDriver(core);

      // Walk: every name, through lookup + READDIRPLUS-style listing.
      const seen: string[] = ['2f'];
      const walk = async (rel: Buffer): Promise<void> => {
        for (const name of await d.list(rel)) {
          const child = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
          seen.push(Buffer.concat([Buffer.from('/'), child]).toString('hex'));
          if (((await d.lstat(child)).mode & 0o170000) === 0o040000) await walk(child);
        }
      };
      await walk(Buffer.alloc(0));
      expect(seen.sort()).toEqual(listing.map((e) => e.path_hex).sort());

      const rel = (e: Entry | string): Buffer => Buffer.from(typeof e === 'string' ? e : e.path_hex, 'hex').subarray(1);
      for (const e of listing) {
        const p = rel(e);
        const where = p.toString() || '/';
        const st = await d.lstat(p);
        if (e.kind === 'hardlink') {
          const target = Buffer.from(e.hardlink_target!.replace(/\0$/, ''));
          expect(st.ino, where).toBe((await d.lstat(target)).ino);
          continue;
        }
        expect(st.mode, `${where} mode`).toBe(e.mode_dec);
        expect([st.uid, st.gid], `${where} owner`).toEqual([e.uid, e.gid]);
        expect(st.mtimeNs, `${where} mtime`).toBe(BigInt(e.mtime!.secs) * 1_000_000_000n + BigInt(e.mtime!.nanos));
        if (e.kind === 'file') {
          expect(st.size).toBe(e.size);
          expect(createHash('sha256').update(await d.read(p, 0, e.size! + 1)).digest('hex'), `${where} content`).toBe(e.sha256);
        }
        if (e.kind === 'symlink') expect((await d.readlink(p)).toString()).toBe(e.symlink_target!.replace(/\0$/, ''));
        if (e.kind === 'chardev' || e.kind === 'blockdev') {
          const rdev = BigInt(st.rdev);
          const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
          const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
          expect([major, minor]).toEqual([e.device_major, e.device_minor]);
        }
        // xattrs through the core's inode API.
        let id = ROOT_ID;
        for (const part of p.length ? p.toString('latin1').split('/') : []) id = (await core.lookup(id, Buffer.from(part, 'latin1')))!.nodeid;
        const names = (await core.listxattr(id)).map(String).filter((n) => !n.startsWith('system.posix_acl_'));
        const want = (e.xattrs ?? []).map((x) => x.name);
        if (e.fcaps_hex) want.push('security.capability');
        expect(names.sort(), `${where} xattr names`).toEqual(want.sort());
        for (const x of e.xattrs ?? []) expect((await core.getxattr(id, Buffer.from(x.name)))!.toString('hex')).toBe(x.value_hex);
      }
      if (nodeCacheSize) {
        // Node ids the kernel holds stay valid after their nodes left the cache: collect every
        // id first (evicting all but the last few), then ask by id only.
        const byId: { e: Entry; id: number; attr: unknown }[] = [];
        for (const e of listing) {
          let id = ROOT_ID;
          let attr: unknown = await core.getattr(ROOT_ID);
          for (const part of rel(e).length ? rel(e).toString('latin1').split('/') : []) {
            const r = (await core.lookup(id, Buffer.from(part, 'latin1')))!;
            id = r.nodeid;
            attr = r.attr;
          }
          byId.push({ e, id, attr });
        }
        expect(byId.length).toBeGreaterThan(nodeCacheSize);
        for (const { e, id, attr } of byId) {
          const where = rel(e).toString() || '/';
          expect(await core.getattr(id), `${where} attributes by id`).toEqual(attr);
          if (e.kind === 'file') {
            const fh = await core.open(id);
            const data = await core.read(fh, 0, e.size! + 1);
            await core.release(fh);
            expect(createHash('sha256').update(data).digest('hex'), `${where} content by id`).toBe(e.sha256);
          }
          if (e.kind === 'symlink') expect((await core.readlink(id)).toString()).toBe(e.symlink_target!.replace(/\0$/, ''));
          if (e.kind === 'directory') {
            const dh = await core.opendir(id);
            const names = (await core.readdir(dh, 0, false, () => true)).map((x) => x.name.toString('hex'));
            core.releasedir(dh);
            const prefix = e.path_hex === '2f' ? '2f' : `${e.path_hex}2f`;
            const kids = listing.filter((k) => k.path_hex.startsWith(prefix) && k.path_hex !== e.path_hex && !k.path_hex.slice(prefix.length).match(/^(..)*2f/));
            expect(names.length - 2, `${where} listing by id`).toBe(kids.length);
          }
        }
      }
      // The archive's own inode numbers: the root is 1.
      expect((await d.lstat(Buffer.alloc(0))).ino).toBe(1);
    });
  }
});

describe('listing attributes (READDIRPLUS) agree with lookups', () => {
  // Listings take attributes synchronously when they are at hand (statSync) and through stat()
  // otherwise, e.g. while the hardlink scan that nlink needs is still running; both paths, and
  // a later LOOKUP of the same name, must give the same answer.
  for (const s of hostSnapshots) {
    it(s.path, async () => {
      const ds = await LocalDatastore.open(datastoreDir);
      const { crypt } = await loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE);
      const snap = await Snapshot.open(ds, parseNamespace(s.namespace ?? ''), parseSnapshotRef(s.path.replace(/^ns\/[^/]+\//, '')), { crypt });
      const core = new VfsCore(await archiveRoot(snap, 'root.pxar', { nlink: 'scan' }));
      let compared = 0;
      let hardlinked = 0;
      const walk = async (id: number): Promise<void> => {
        const dh = await core.opendir(id);
        const listed = await core.readdir(dh, 0, true, () => true);
        core.releasedir(dh);
        for (const e of listed.slice(2)) {
          const looked = (await core.lookup(id, e.name))!;
          expect(e.attr, e.name.toString()).toEqual(looked.attr);
          expect(e.nodeid).toBe(looked.nodeid);
          compared++;
          if ((e.attr.mode & 0o170000) === 0o100000 && e.attr.nlink > 1) hardlinked++;
          if ((e.attr.mode & 0o170000) === 0o040000) await walk(e.nodeid);
        }
      };
      await walk(ROOT_ID);
      expect(compared).toBeGreaterThan(10);
      // The vector archives hold a hardlink: its target and the link count each other.
      expect(hardlinked).toBeGreaterThanOrEqual(2);
    });
  }
});
