/** Vector access shared by the fuzz targets (all read-only). */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CryptConfig } from '../../../src/crypto/crypt-config.js';
import { decryptKeyConfig, parseKeyConfig } from '../../../src/crypto/key-config.js';
import { InvariantViolation, type Seed } from '../framework.js';
import { datastoreDir, keysDir, vectorsDir } from '../paths.js';

export interface ExpectedSnapshot {
  path: string;
  crypt_mode: 'none' | 'encrypt' | 'sign-only';
  files: Record<string, { chunks?: { digest: string; start: number; end: number }[]; manifest_plain_copy?: string }>;
}

export function expectedSnapshots(): ExpectedSnapshot[] {
  return (JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as { snapshots: ExpectedSnapshot[] }).snapshots;
}

/** Every snapshot file whose name matches, as seeds named by their datastore path. */
export function snapshotFileSeeds(match: (name: string) => boolean, hot?: (data: Buffer) => number[]): Seed[] {
  const out: Seed[] = [];
  for (const s of expectedSnapshots()) {
    for (const f of Object.keys(s.files).sort()) {
      if (!match(f)) continue;
      const data = readFileSync(join(datastoreDir, s.path, f));
      out.push({ name: `${s.path}/${f}`, data, ...(hot ? { hot: hot(data) } : {}) });
    }
  }
  return out;
}

/** Loads a kdf-less vector key file (no passphrase, no scrypt cost). */
export async function plainKey(file: 'key-none.json' | 'other-key-none.json'): Promise<CryptConfig> {
  const path = join(keysDir, file);
  const kc = parseKeyConfig(readFileSync(path, 'utf8'), path);
  const { key } = await decryptKeyConfig(kc, async () => '', path);
  return CryptConfig.fromKey(key);
}

/** Files below `dir` (recursively) whose name matches. */
export function filesBelow(dir: string, match: (name: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (match(n)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

export function rel(p: string): string {
  return relative(vectorsDir, p);
}

export function check(cond: boolean, what: string): void {
  if (!cond) throw new InvariantViolation(what);
}

/** Offsets 0..n-1 in steps (hot spots covering a header). */
export function range(from: number, to: number, step = 1): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i += step) out.push(i);
  return out;
}
