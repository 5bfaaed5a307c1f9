/**
 * A whole-datastore tree (several archives, so several inode domains) through the VfsCore with a
 * node cache of 16: archive nodes are dropped and rebuilt from their node ids all the time, and
 * every answer must equal the one a core with a large cache gives. Node ids of archive entries
 * encode (archive slot, inode number); this checks they stay unique and stable.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { ROOT_ID, VfsCore } from '../../src/vfs/core.js';
import { datastoreTree } from '../../src/vfs/datastore-tree.js';
import type { VfsStat } from '../../src/vfs/types.js';
import { datastoreDir, keysDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';

interface Seen {
  path: string;
  id: number;
  attr: VfsStat;
}

async function makeCore(nodeCacheSize?: number): Promise<VfsCore> {
  const ds = await LocalDatastore.open(datastoreDir);
  const { crypt } = await loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE);
  const root = datastoreTree(ds, [], { openSnapshot: (d, ns, ref) => Snapshot.open(d, ns, ref, { crypt }) });
  return new VfsCore(root, nodeCacheSize ? { nodeCacheSize } : {});
}

/** Every entry reachable from the root, through OPENDIR + READDIRPLUS as the kernel does. */
async function walk(core: VfsCore): Promise<Seen[]> {
  const out: Seen[] = [{ path: '/', id: ROOT_ID, attr: await core.getattr(ROOT_ID) }];
  const visit = async (id: number, path: string): Promise<void> => {
    const dh = await core.opendir(id);
    let list;
    try {
      list = await core.readdir(dh, 0, true, () => true);
    } finally {
      core.releasedir(dh);
    }
    for (const e of list.slice(2)) {
      const p = `${path === '/' ? '' : path}/${e.name.toString('hex')}`;
      if (e.nodeid === 0) continue; // unreadable entry (reported on lookup)
      out.push({ path: p, id: e.nodeid, attr: e.attr });
      if ((e.attr.mode & 0o170000) === 0o040000) {
        try {
          await visit(e.nodeid, p);
        } catch {
          // e.g. an encrypted archive of another key: both cores must fail alike (compared below)
          out.push({ path: `${p}/!`, id: -1, attr: e.attr });
        }
      }
    }
  };
  await visit(ROOT_ID, '/');
  return out;
}

async function contentHash(core: VfsCore, id: number, size: number): Promise<string> {
  const fh = await core.open(id);
  try {
    const h = createHash('sha256');
    for (let off = 0; off < size; off += 1 << 20) h.update(await core.read(fh, off, 1 << 20));
    return h.digest('hex');
  } finally {
    await core.release(fh);
  }
}

describe('datastore tree through the VfsCore with a tiny node cache', () => {
  it('answers by node id exactly as with a large cache, with unique inode numbers', async () => {
    const small = await makeCore(16);
    const large = await makeCore();
    const a = await walk(small);
    const b = await walk(large);
    expect(a.map((s) => s.path)).toEqual(b.map((s) => s.path));
    expect(a.length).toBeGreaterThan(100);
    // Several archives share this mount: ids that encode an archive slot must have appeared.
    expect(a.some((s) => s.id >= 2 ** 44)).toBe(true);
    for (let i = 0; i < a.length; i++) expect(a[i]!.attr, a[i]!.path).toEqual(b[i]!.attr);

    // st_ino is the node id here: distinct entries have distinct numbers unless they are one
    // inode (hardlinks: same attributes, several names).
    const byIno = new Map<number, Seen>();
    for (const s of a) {
      if (s.id === -1) continue;
      const other = byIno.get(s.attr.ino);
      if (other !== undefined) {
        expect(s.attr.nlink, `${s.path} shares inode ${s.attr.ino} with ${other.path}`).toBeGreaterThan(1);
        expect(s.attr).toEqual(other.attr);
      }
      byIno.set(s.attr.ino, s);
    }

    // Now by id only, long after most nodes left the 16-entry cache.
    let files = 0;
    for (let i = 0; i < a.length; i++) {
      const s = a[i]!;
      if (s.id === -1) continue;
      expect(await small.getattr(s.id), `${s.path} by id`).toEqual(s.attr);
      const kind = s.attr.mode & 0o170000;
      if (kind === 0o100000 && s.attr.size <= 64 * 1024 * 1024) {
        expect(await contentHash(small, s.id, s.attr.size), `${s.path} content by id`).toBe(await contentHash(large, b[i]!.id, s.attr.size));
        files++;
      }
      if (kind === 0o120000) expect(await small.readlink(s.id)).toEqual(await large.readlink(b[i]!.id));
      expect((await small.listxattr(s.id)).map(String).sort()).toEqual((await large.listxattr(b[i]!.id)).map(String).sort());
    }
    expect(files).toBeGreaterThan(10);
  }, 120_000);
});

describe('read-ahead stays out of the made-up levels', () => {
  it('walking groups and snapshots in order prepares no listing (manifests and archives are read only when entered)', async () => {
    const core = await makeCore();
    // Depth-first in listing order, as `find` would, but stopping at the snapshot directories.
    const visit = async (id: number, depth: number): Promise<void> => {
      const dh = await core.opendir(id);
      const list = await core.readdir(dh, 0, true, () => true);
      core.releasedir(dh);
      if (depth === 3) return; // TYPE/ID/TIME: its entries are archives
      for (const e of list.slice(2)) if (e.nodeid !== 0 && (e.attr.mode & 0o170000) === 0o040000 && !e.name.equals(Buffer.from('ns'))) await visit(e.nodeid, depth + 1);
    };
    await visit(ROOT_ID, 0);
    await new Promise((r) => setImmediate(r));
    const vfs = core.statsSnapshot().vfs as { listingsPrepared: number };
    expect(vfs.listingsPrepared).toBe(0);
  });
});
