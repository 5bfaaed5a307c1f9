/**
 * Comparable descriptions of a tree: one from the source filesystem (lstat, getfattr), one from
 * a backed-up snapshot (our datastore and pxar readers). Both list entries in archive order
 * (depth-first, names sorted bytewise) with kind, metadata, content hash and link targets.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { CryptConfig } from '../../src/crypto/crypt-config.js';
import { PxarSequentialDecoder } from '../../src/pxar/sequential.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { parseSnapshotRef } from '../../src/store/backup-ref.js';
import { readTreeAttrs } from '../../src/writer/fs-attrs.js';
import { splitDev } from '../../src/writer/fs-walk.js';

export interface EntryModel {
  path: string; // hex of the root-relative path bytes ('' = root)
  kind: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: string; // secs.nanos
  size?: number;
  sha256?: string;
  target?: string; // hex of symlink / hardlink target
  device?: string;
  xattrs?: string[]; // "name=hex", sorted
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export function modelFromFs(root: string, withXattrs: boolean): EntryModel[] {
  const attrs = withXattrs ? readTreeAttrs(root) : undefined;
  const out: EntryModel[] = [];
  const links = new Map<string, string>();
  const visit = (abs: Buffer, rel: Buffer): void => {
    const st = lstatSync(abs, { bigint: true });
    const e: EntryModel = { path: rel.toString('hex'), kind: '' };
    const meta = (): void => {
      e.mode = Number(st.mode);
      e.uid = Number(st.uid);
      e.gid = Number(st.gid);
      let s = st.mtimeNs / 1_000_000_000n;
      let n = st.mtimeNs - s * 1_000_000_000n;
      if (n < 0n) (s -= 1n), (n += 1_000_000_000n);
      e.mtime = `${s}.${n}`;
    };
    const xa = (): void => {
      const a = attrs?.get(rel.toString('latin1'));
      if (a && a.xattrs.length) e.xattrs = a.xattrs.map((x) => `${Buffer.from(x.name).toString('latin1')}=${Buffer.from(x.value).toString('hex')}`).sort();
    };
    if (st.isDirectory()) {
      e.kind = 'directory';
      meta();
      xa();
      out.push(e);
      const names = readdirSync(abs, { encoding: 'buffer' }).sort(Buffer.compare);
      for (const n of names) visit(Buffer.concat([abs, Buffer.from('/'), n]), rel.length ? Buffer.concat([rel, Buffer.from('/'), n]) : n);
      return;
    }
    if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? links.get(key) : undefined;
      if (first !== undefined) {
        e.kind = 'hardlink';
        e.target = first;
      } else {
        if (st.nlink > 1n) links.set(key, rel.toString('hex'));
        e.kind = 'file';
        meta();
        xa();
        const data = readFileSync(abs);
        e.size = data.length;
        e.sha256 = sha(data);
      }
    } else if (st.isSymbolicLink()) {
      e.kind = 'symlink';
      meta();
      e.target = readlinkSync(abs, { encoding: 'buffer' }).toString('hex');
    } else if (st.isFIFO()) {
      e.kind = 'fifo';
      meta();
    } else if (st.isSocket()) {
      e.kind = 'socket';
      meta();
    } else {
      e.kind = st.isBlockDevice() ? 'blockdev' : 'chardev';
      meta();
      const d = splitDev(st.rdev);
      e.device = `${d.major}:${d.minor}`;
    }
    out.push(e);
  };
  visit(Buffer.from(root), Buffer.alloc(0));
  return out;
}

/** Reads `archive` (a pxar label like `root`) of a snapshot with our readers. */
export async function modelFromSnapshot(repo: string, snapshot: string, crypt: CryptConfig | undefined, archive = 'root'): Promise<EntryModel[]> {
  const ds = await LocalDatastore.open(repo);
  const snap = await Snapshot.open(ds, [], parseSnapshotRef(snapshot), crypt ? { crypt } : {});
  const layout = snap.pxarLayout(`${archive}.pxar`);
  const main = await snap.openIndex(layout.kind === 'single' ? layout.archive : layout.meta);
  const payload = layout.kind === 'split' ? (await snap.openIndex(layout.payload)).readAt : undefined;
  const dec = await PxarSequentialDecoder.open(main.readAt, payload);
  const out: EntryModel[] = [];
  for await (const x of dec.entries()) {
    const rel = x.path.length <= 1 ? Buffer.alloc(0) : x.path.subarray(1);
    const e: EntryModel = { path: rel.toString('hex'), kind: x.kind };
    const m = x.metadata;
    if (m) {
      e.mode = m.stat.mode;
      e.uid = m.stat.uid;
      e.gid = m.stat.gid;
      e.mtime = `${m.stat.mtimeSecs}.${m.stat.mtimeNanos}`;
      if (m.xattrs.length) e.xattrs = m.xattrs.map((a) => `${a.name.toString('latin1')}=${a.value.toString('hex')}`).sort();
    }
    if (x.kind === 'file') {
      const parts: Buffer[] = [];
      for await (const b of dec.stream(x)) parts.push(b);
      const data = Buffer.concat(parts);
      e.size = data.length;
      e.sha256 = sha(data);
    }
    if (x.kind === 'symlink') e.target = x.symlinkTarget!.toString('hex');
    if (x.kind === 'hardlink') e.target = x.hardlink!.target.toString('hex');
    if (x.device) e.device = `${x.device.major}:${x.device.minor}`;
    out.push(e);
  }
  // Random access through the goodbye tables must find every entry, and readdir lists exactly
  // the children the sequential walk saw (this checks the BST tables and their offsets).
  const acc = await PxarAccessor.open(main.readAt, payload);
  const children = new Map<string, string[]>();
  for (const e of out) {
    if (e.path === '') continue;
    const rel = Buffer.from(e.path, 'hex');
    const found = await acc.lookupPath(Buffer.concat([Buffer.from('/'), rel]));
    if (found === undefined || found.kind !== e.kind) throw new Error(`accessor lookup of ${rel.toString()} failed`);
    const cut = rel.lastIndexOf(0x2f);
    const parent = cut < 0 ? '' : rel.subarray(0, cut).toString('hex');
    const list = children.get(parent) ?? [];
    list.push(rel.subarray(cut + 1).toString('hex'));
    children.set(parent, list);
  }
  for (const e of out.filter((x) => x.kind === 'directory')) {
    const rel = Buffer.from(e.path, 'hex');
    const dir = e.path === '' ? acc.root() : (await acc.lookupPath(Buffer.concat([Buffer.from('/'), rel])))!;
    const names = (await acc.readdir(dir)).map((c) => c.name.toString('hex')).sort();
    const want = (children.get(e.path) ?? []).sort();
    if (JSON.stringify(names) !== JSON.stringify(want)) throw new Error(`accessor readdir of /${rel.toString()} differs`);
  }
  return out;
}

export function sha256(b: Uint8Array): string {
  return sha(b);
}
export { readFileSync };
