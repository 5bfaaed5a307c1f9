/**
 * Where the project and the vectors are, from either the TypeScript source (vitest) or the
 * compiled copy in dist/ (npm run fuzz): walk up to the pbsfs package.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findProjectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'pbsfs') return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the pbsfs project root');
    dir = up;
  }
}

export const projectRoot = findProjectRoot();
/** The reference vectors (a holdout set may replace them; PBSFS_VECTORS overrides). */
export const vectorsDir = process.env.PBSFS_VECTORS ?? resolve(projectRoot, '..', 'shared', 'vectors');
export const datastoreDir = join(vectorsDir, 'datastore', 'store');
export const keysDir = join(vectorsDir, 'keys');
export const blobsDir = join(vectorsDir, 'blobs');
export const pxarDir = join(vectorsDir, 'pxar');
/** Crashing inputs, committed as regression fixtures: regressions/<target>/<sha256>.bin. */
export const regressionsDir = join(projectRoot, 'test', 'fuzz', 'regressions');
/** Passphrase of the public vector key files (see vectors/README.md). */
export const VECTOR_PASSPHRASE = 'correct horse battery staple';
