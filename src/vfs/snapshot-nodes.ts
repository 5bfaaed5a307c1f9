/**
 * The nodes of one snapshot: a directory with one entry per archive, and the archive nodes.
 *
 *   root.pxar.didx                 -> directory `root.pxar` (the archive's tree)
 *   root.mpxar.didx + .ppxar.didx  -> directory `root.pxar` too (the split pair shown once, under
 *                                     the name a single-stream archive would have)
 *   drive-scsi0.img.fidx           -> file `drive-scsi0.img` of the image's exact size, and
 *                                     directory `drive-scsi0.img.d` of its volumes (disk-tree.ts)
 *   other .didx / .fidx            -> file named without the extension (the decoded stream)
 *   qemu-server.conf.blob          -> file `qemu-server.conf` (decoded)
 *
 * Nothing is read until asked for: an archive directory opens its index and decodes its root
 * only when it is entered (until then it shows mode 0555, owner root and the backup time), an
 * image opens its index on first open, a blob is decoded on first stat or open.
 */
import type { Snapshot } from '../snapshot/snapshot.js';
import { openPxarTree, type PxarTreeOptions } from './pxar-tree.js';
import { inodeSourceOf, registerInodeDomain, type InodeSource } from './core.js';
import type { VfsDirEntry, VfsFileHandle, VfsNode, VfsStat } from './types.js';
import { LazyDir, ReadAtFile, S_IFDIR, S_IFREG, allocVirtualIno, type NodeTimes } from './virtual-nodes.js';
import type { ReadAt } from '../io/read-at.js';
import { NotFoundError } from '../errors.js';
import { imageVolumesDir, type DiskTreeOptions } from './disk-tree.js';

/**
 * A directory that stands for a tree opened on first use (an archive). Its own attributes are
 * synthetic until then, and its inode number is 1, the number every pxar root has, so it takes
 * the root's place in the archive's inode domain.
 */
export class DeferredDir implements VfsNode {
  readonly kind = 'directory' as const;
  private real: Promise<VfsNode> | undefined;

  constructor(
    private readonly openTree: () => Promise<VfsNode>,
    private readonly times: NodeTimes,
  ) {}

  target(): Promise<VfsNode> {
    if (this.real === undefined) {
      const p = this.openTree();
      p.catch(() => {
        if (this.real === p) this.real = undefined; // a failed open is retried next time
      });
      this.real = p;
    }
    return this.real;
  }

  async stat(): Promise<VfsStat> {
    return {
      ino: 1,
      mode: S_IFDIR | 0o555,
      nlink: 2,
      uid: 0,
      gid: 0,
      size: 0,
      blocks: 0,
      mtimeSec: this.times.mtimeSec,
      mtimeNsec: this.times.mtimeNsec ?? 0,
      rdev: 0,
    };
  }

  async readdir(): Promise<VfsDirEntry[]> {
    const t = await this.target();
    return (await t.readdir?.()) ?? [];
  }

  async lookup(name: Buffer): Promise<VfsNode | undefined> {
    const t = await this.target();
    if (t.lookup) return t.lookup(name);
    return ((await t.readdir?.()) ?? []).find((e) => e.name.equals(name))?.node;
  }

  async listxattr(): Promise<Buffer[]> {
    return (await this.target()).listxattr();
  }

  async getxattr(name: Buffer): Promise<Buffer | undefined> {
    return (await this.target()).getxattr(name);
  }
}

/** A file over an index archive (disk image, catalog, ...): size from the manifest. */
export function indexFileNode(snapshot: Snapshot, filename: string, size: number): VfsNode {
  let opened: Promise<ReadAt> | undefined;
  const open = (): Promise<ReadAt> => {
    if (opened === undefined) {
      const p = snapshot.openIndex(filename).then((o) => o.readAt as ReadAt);
      p.catch(() => {
        if (opened === p) opened = undefined;
      });
      opened = p;
    }
    return opened;
  };
  return new ReadAtFile(open, size, { mtimeSec: snapshot.ref.time }, 0o444);
}

/** A decoded blob. Its size is known only after decoding; a blob that cannot be decoded shows size 0 and fails on open. */
export class BlobFile implements VfsNode {
  readonly kind = 'file' as const;
  readonly ino = allocVirtualIno();
  private data: Promise<Buffer> | undefined;

  constructor(
    private readonly snapshot: Snapshot,
    private readonly filename: string,
  ) {}

  private decoded(): Promise<Buffer> {
    if (this.data === undefined) {
      const p = this.snapshot.readBlob(this.filename);
      p.catch(() => {
        if (this.data === p) this.data = undefined;
      });
      this.data = p;
    }
    return this.data;
  }

  async stat(): Promise<VfsStat> {
    // A listing must not fail because one blob cannot be decoded (e.g. no key): size 0 then.
    const size = await this.decoded().then(
      (b) => b.length,
      () => 0,
    );
    return {
      ino: this.ino,
      mode: S_IFREG | 0o444,
      nlink: 1,
      uid: 0,
      gid: 0,
      size,
      blocks: Math.ceil(size / 512),
      mtimeSec: this.snapshot.ref.time,
      mtimeNsec: 0,
      rdev: 0,
    };
  }

  async open(): Promise<VfsFileHandle> {
    const data = await this.decoded();
    return {
      read: async (offset, length) => data.subarray(Math.min(offset, data.length), Math.min(data.length, offset + length)),
      release: async () => undefined,
    };
  }

  async listxattr(): Promise<Buffer[]> {
    return [];
  }

  async getxattr(): Promise<Buffer | undefined> {
    return undefined;
  }
}

/** Opens the tree of a file archive (single or split) as a VfsNode root (an inode domain). */
export async function openArchiveTree(snapshot: Snapshot, name: string, opts: PxarTreeOptions = {}): Promise<VfsNode> {
  const layout = snapshot.pxarLayout(name);
  if (layout.kind === 'single') {
    const { readAt } = await snapshot.openIndex(layout.archive);
    return openPxarTree(readAt, undefined, opts);
  }
  const meta = await snapshot.openIndex(layout.meta);
  const payload = await snapshot.openIndex(layout.payload);
  return openPxarTree(meta.readAt, payload.readAt, opts);
}

export interface SnapshotEntry {
  name: string;
  node: VfsNode;
}

/** `NAME.img.d`: the volumes of the image archive `filename` (a .img.fidx). */
export function imageVolumesEntry(snapshot: Snapshot, filename: string, diskOpts: DiskTreeOptions = {}): SnapshotEntry {
  const open = async (): Promise<ReadAt> => (await snapshot.openIndex(filename)).readAt;
  return { name: `${filename.slice(0, -5)}.d`, node: imageVolumesDir(open, { mtimeSec: snapshot.ref.time }, diskOpts) };
}

/** One entry per archive of the snapshot (see the header comment for the names). */
export function snapshotEntries(snapshot: Snapshot, treeOpts: PxarTreeOptions = {}, diskOpts: DiskTreeOptions = {}): SnapshotEntry[] {
  const times: NodeTimes = { mtimeSec: snapshot.ref.time };
  const out: SnapshotEntry[] = [];
  const seen = new Set<string>();
  for (const f of snapshot.manifest.files) {
    const fn = f.filename;
    const pxar = /^(.*)\.(pxar|mpxar|ppxar)\.didx$/.exec(fn);
    if (pxar) {
      const label = `${pxar[1]}.pxar`;
      if (seen.has(label)) continue;
      seen.add(label);
      const dir = new DeferredDir(() => openArchiveTree(snapshot, fn, treeOpts), times);
      // The archive's nodes are rebuilt by its own tree once opened (see InodeSource).
      const source: InodeSource = {
        nodeByIno: async (ino) => {
          const tree = await dir.target();
          const inner = inodeSourceOf(tree);
          if (inner === undefined) throw new NotFoundError(`no node with inode number ${ino}`, { file: `${snapshot.path}/${fn}` });
          return inner.nodeByIno(ino);
        },
      };
      out.push({ name: label, node: registerInodeDomain(dir, source) });
    } else if (fn.endsWith('.fidx') || fn.endsWith('.didx')) {
      out.push({ name: fn.slice(0, -5), node: indexFileNode(snapshot, fn, f.size) });
      if (fn.endsWith('.img.fidx')) out.push(imageVolumesEntry(snapshot, fn, diskOpts));
    } else if (fn.endsWith('.blob')) {
      out.push({ name: fn.slice(0, -5), node: new BlobFile(snapshot, fn) });
    }
  }
  return out;
}

/** The snapshot as a directory (its manifest is already read: Snapshot.open checked it). */
export function snapshotDir(snapshot: Snapshot, treeOpts: PxarTreeOptions = {}): VfsNode {
  return new LazyDir(
    async () => snapshotEntries(snapshot, treeOpts).map((e) => ({ name: Buffer.from(e.name), node: e.node })),
    { mtimeSec: snapshot.ref.time },
  );
}

/**
 * The root for `pbsfs mount SNAPSHOT ARCHIVE`: a file archive's own tree, or, for an image or a
 * blob, a directory holding that one file (a mount root must be a directory).
 */
export async function archiveRoot(snapshot: Snapshot, archive: string, treeOpts: PxarTreeOptions = {}): Promise<VfsNode> {
  let filename: string;
  try {
    filename = snapshot.resolveFile(archive).filename;
  } catch (e) {
    // `root.pxar` also names a split pair (root.mpxar.didx + root.ppxar.didx).
    if (/\.(pxar|mpxar|ppxar)$/.test(archive)) return openArchiveTree(snapshot, archive, treeOpts);
    throw e;
  }
  if (/\.(pxar|mpxar|ppxar)\.didx$/.test(filename)) return openArchiveTree(snapshot, filename, treeOpts);
  const label = filename.slice(0, -5);
  // An image comes with its volumes directory.
  const wanted = snapshotEntries(snapshot).filter((e) => e.name === label || (filename.endsWith('.img.fidx') && e.name === `${label}.d`));
  if (wanted.length === 0) throw new NotFoundError(`snapshot has no archive ${JSON.stringify(archive)}`, { file: snapshot.path });
  return new LazyDir(async () => wanted.map((w) => ({ name: Buffer.from(w.name), node: w.node })), { mtimeSec: snapshot.ref.time });
}
