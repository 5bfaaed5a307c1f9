/**
 * A writable temporary copy of the vector datastore, for tests that damage data. The shared
 * vectors are read-only (and must stay untouched); the copy is made writable and removed after.
 */
import { chmod, cp, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { dir } from 'tmp-promise';
import { datastoreDir } from './paths.js';

export interface DatastoreCopy {
  root: string;
  cleanup(): Promise<void>;
}

async function makeWritable(p: string): Promise<void> {
  const st = await stat(p);
  await chmod(p, st.mode | 0o200 | (st.isDirectory() ? 0o100 : 0));
  if (st.isDirectory()) for (const n of await readdir(p)) await makeWritable(join(p, n));
}

export async function copyDatastore(): Promise<DatastoreCopy> {
  const tmp = await dir({ unsafeCleanup: true, prefix: 'pbsfs-ds-' });
  const root = join(tmp.path, 'store');
  await cp(datastoreDir, root, { recursive: true });
  await makeWritable(root);
  return { root, cleanup: () => tmp.cleanup() };
}
