/**
 * A fingerprint of a directory tree: every path, its type, size, mode, mtime (ns) and, for
 * regular files, a SHA-256 of the contents. Two equal fingerprints mean nothing was created,
 * removed, changed or touched (mtime) in between. Used to prove pbsfs never writes to a datastore.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export function treeFingerprint(root: string): string {
  const lines: string[] = [];
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(abs, { bigint: true });
      let extra = '';
      if (st.isFile()) extra = createHash('sha256').update(readFileSync(abs)).digest('hex');
      else if (st.isSymbolicLink()) extra = readlinkSync(abs);
      lines.push(`${r}\t${st.mode.toString(8)}\t${st.size}\t${st.mtimeNs}\t${extra}`);
      if (st.isDirectory()) walk(abs, r);
    }
  };
  walk(root, '');
  return createHash('sha256').update(lines.join('\n')).digest('hex') + `:${lines.length}`;
}
