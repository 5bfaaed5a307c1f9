/**
 * Seam between the snapshot commands and the pxar layer: opening a file archive of a snapshot
 * (`root.pxar` -> `root.pxar.didx`, or the split pair `root.mpxar.didx` + `root.ppxar.didx`),
 * and `pbsfs cat SNAPSHOT ARCHIVE PATH` for one file inside it.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { NotFoundError, UsageError } from '../errors.js';
import type { ReadAt } from '../io/read-at.js';
import { PxarAccessor } from '../pxar/accessor.js';
import type { Snapshot } from '../snapshot/snapshot.js';

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

/** Opens the random-access accessor over a snapshot's file archive. */
export async function openSnapshotAccessor(snapshot: Snapshot, name: string): Promise<PxarAccessor> {
  const { archive, payload } = await openSnapshotPxar(snapshot, name);
  return PxarAccessor.open(archive, payload);
}

export interface CatPxarPathArgs {
  snapshot: Snapshot;
  /** Archive as given on the command line (`root.pxar`, `root.pxar.didx`, `root.mpxar.didx`, ...). */
  archive: string;
  /** Path inside the archive. */
  path: string;
  out: Writable;
}

/** Writes one regular file (or hardlink) from inside a pxar archive to `out`, with backpressure. */
export async function catPxarPath(args: CatPxarPathArgs): Promise<void> {
  const acc = await openSnapshotAccessor(args.snapshot, args.archive);
  const found = await acc.lookupPath(args.path);
  if (found === undefined) {
    throw new NotFoundError(`no such file in the archive: ${args.path}`, { file: `${args.snapshot.path}/${args.archive}` });
  }
  const e = await acc.resolve(found);
  if (e.kind !== 'file') {
    throw new UsageError(`${args.path} is a ${e.kind}, not a regular file`, { file: `${args.snapshot.path}/${args.archive}` });
  }
  const out = args.out;
  for await (const block of acc.stream(e)) {
    if (out.destroyed || out.writableEnded) return;
    if (!out.write(block)) {
      await Promise.race([once(out, 'drain'), once(out, 'close')]);
    }
  }
}
