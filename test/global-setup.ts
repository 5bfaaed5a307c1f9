/**
 * Whole-suite guard: the shared vectors (including the reference datastore) must be exactly as
 * they were before the suite ran. pbsfs opens datastores read-only; this proves it for every
 * test at once (tree listing, sizes, modes, mtimes and content hashes).
 */
import { existsSync } from 'node:fs';
import { treeFingerprint } from './helpers/tree-fingerprint.js';
import { vectorsDir } from './helpers/paths.js';

export default function setup(): () => void {
  if (!existsSync(vectorsDir)) throw new Error(`test vectors not found at ${vectorsDir}`);
  const before = treeFingerprint(vectorsDir);
  return () => {
    const after = treeFingerprint(vectorsDir);
    if (after !== before) {
      throw new Error(`the test suite modified ${vectorsDir}: fingerprint ${before} became ${after}`);
    }
  };
}
