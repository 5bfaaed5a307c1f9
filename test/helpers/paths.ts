import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
export const projectRoot = resolve(here, '..', '..');
/**
 * ../shared/vectors, read-only reference data made by the upstream implementation
 * (PBSFS_VECTORS names it for a checkout that is not beside shared/, e.g. a git worktree).
 */
export const vectorsDir = process.env.PBSFS_VECTORS ?? resolve(projectRoot, '..', 'shared', 'vectors');
export const datastoreDir = join(vectorsDir, 'datastore', 'store');
export const keysDir = join(vectorsDir, 'keys');
export const blobsDir = join(vectorsDir, 'blobs');
export const pxarDir = join(vectorsDir, 'pxar');
export const upstreamDir = join(vectorsDir, 'upstream');
/** The built CLI (tests run `npm run build` first). */
export const cliPath = join(projectRoot, 'dist', 'src', 'cli', 'main.js');
/** Passphrase of the public vector key files (see vectors/README.md). */
export const VECTOR_PASSPHRASE = 'correct horse battery staple';
