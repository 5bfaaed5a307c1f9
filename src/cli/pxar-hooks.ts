/**
 * Seam between the generic `cat` command and the pxar layer (owned by the pxar work): when
 * `pbsfs cat SNAPSHOT ARCHIVE PATH` names a path inside a file archive, `cat` calls
 * catPxarPath. Until the pxar decoder lands this reports that the feature is not available.
 */
import type { Writable } from 'node:stream';
import { UnsupportedError } from '../errors.js';
import type { Snapshot } from '../snapshot/snapshot.js';

export interface CatPxarPathArgs {
  snapshot: Snapshot;
  /** Archive as given on the command line (`root.pxar`, `root.pxar.didx`, `root.mpxar.didx`, ...). */
  archive: string;
  /** Path inside the archive. */
  path: string;
  out: Writable;
}

export async function catPxarPath(args: CatPxarPathArgs): Promise<void> {
  void args;
  throw new UnsupportedError('reading a path inside a pxar archive is not yet available');
}
