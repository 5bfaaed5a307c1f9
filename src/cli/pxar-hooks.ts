/**
 * Seam between the snapshot commands and the layers below for file archives (`root.pxar` ->
 * `root.pxar.didx`, or the split pair `root.mpxar.didx` + `root.ppxar.didx`):
 * - `openArchiveVfs`: the archive as the FUSE-free VFS presents it (the same tree
 *   `pbsfs mount SNAPSHOT ARCHIVE` shows); `ls` and `cat SNAPSHOT ARCHIVE PATH` go through it.
 * - `openSnapshotPxar`: the raw streams, for restore's in-order decoder.
 */
import type { Writable } from 'node:stream';
import { NotFoundError, UsageError } from '../errors.js';
import type { ReadAt } from '../io/read-at.js';
import type { Snapshot } from '../snapshot/snapshot.js';
import { VfsCore } from '../vfs/core.js';
import { openArchiveTree } from '../vfs/snapshot-nodes.js';
import { writeWithBackpressure } from './stream-out.js';

export interface SnapshotPxar {
  /** The unified archive, or the metadata stream of a split archive. */
  archive: ReadAt;
  /** The payload stream of a split archive. */
  payload: ReadAt | undefined;
  /** Server file names used, for messages. */
  files: string[];
}

/** Opens the file archive `name` of a snapshot (any of root.pxar, root.pxar.didx, root.mpxar.didx). */
export async function openSnapshotPxar(snapshot: Snapshot, name: string): Promise<SnapshotPxar> {
  const layout = snapshot.pxarLayout(name);
  if (layout.kind === 'single') {
    const { readAt } = await snapshot.openIndex(layout.archive);
    return { archive: readAt, payload: undefined, files: [layout.archive] };
  }
  const meta = await snapshot.openIndex(layout.meta);
  const payload = await snapshot.openIndex(layout.payload);
  return { archive: meta.readAt, payload: payload.readAt, files: [layout.meta, layout.payload] };
}

export interface ArchiveVfs {
  core: VfsCore;
  /** `SNAPSHOT/FILE` of the archive's (metadata) index, for messages. */
  name: string;
}

/**
 * Opens a file archive of a snapshot as a VFS. Hardlink counts are not scanned for (no one-shot
 * command shows st_nlink, and the scan reads all metadata).
 */
export async function openArchiveVfs(snapshot: Snapshot, archive: string): Promise<ArchiveVfs> {
  const layout = snapshot.pxarLayout(archive);
  const root = await openArchiveTree(snapshot, archive, { nlink: 'off' });
  return { core: new VfsCore(root), name: `${snapshot.path}/${layout.kind === 'single' ? layout.archive : layout.meta}` };
}

export interface CatPxarPathArgs {
  snapshot: Snapshot;
  /** Archive as given on the command line (`root.pxar`, `root.pxar.didx`, `root.mpxar.didx`, ...). */
  archive: string;
  /** Path inside the archive. */
  path: string;
  out: Writable;
}

/** Bytes asked of the VFS per read: bounded memory for any file size. */
const CAT_PIECE = 1024 * 1024;

/**
 * Writes one regular file (or hardlink) from inside a pxar archive to `out` through the VFS, in
 * pieces, with backpressure. Symlinks are not followed (like the archive shows them).
 */
export async function catPxarPath(args: CatPxarPathArgs): Promise<void> {
  const { core, name } = await openArchiveVfs(args.snapshot, args.archive);
  const node = await core.lookupPath(args.path);
  if (node === undefined) throw new NotFoundError(`no such file in the archive: ${args.path}`, { file: name, errorCode: 'path-not-found' });
  if (node.kind !== 'file' || node.open === undefined) {
    throw new UsageError(`${args.path} is a ${node.kind}, not a regular file`, { file: name });
  }
  const size = (await node.stat()).size;
  const handle = await node.open();
  try {
    for (let off = 0; off < size; ) {
      const piece = await handle.read(off, Math.min(CAT_PIECE, size - off));
      if (piece.length === 0) break;
      await writeWithBackpressure(args.out, piece);
      off += piece.length;
    }
  } finally {
    await handle.release();
  }
}
