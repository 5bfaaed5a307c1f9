/**
 * The damaged-datastore matrix: each fixture is a temp copy of the vector datastore with one
 * fault, named after the error it must produce. For each one:
 * - the library (Snapshot -> index -> chunk reader) throws that typed error, naming the file;
 * - `pbsfs cat`, `pbsfs verify` and `pbsfs restore` (child processes) exit with the error's code
 *   (>= 2), print one line on stderr (no stack) naming the file, and never write a wrong byte:
 *   cat's partial stdout is a prefix of the true archive, restored files are prefixes of the
 *   true files.
 * All faults hit the encrypted pxar archive with the most chunks (a middle chunk, so that cat and
 * restore have good data to write before the fault), chosen from expected.json (holdout-safe).
 */
import { createHash } from 'node:crypto';
import { copyFile, lstat, readFile, readdir, readlink, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBlob, encodeBlob } from '../../src/blob/data-blob.js';
import { formatFingerprint } from '../../src/crypto/crypt-config.js';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import {
  CryptoError,
  FormatError,
  IntegrityError,
  NotFoundError,
  PbsfsError,
} from '../../src/errors.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { formatSnapshotRef } from '../../src/store/backup-ref.js';
import { Datastore } from '../../src/store/datastore.js';
import { crc32 } from '../../src/util/crc32.js';
import { copyDatastore, type DatastoreCopy } from '../helpers/datastore-copy.js';
import { archiveFacts, expectedSnapshots, loadOtherKey, loadVectorKey, splitSnapshotPath } from '../helpers/datastore-expected.js';
import { datastoreDir, keysDir } from '../helpers/paths.js';
import { errorLine, runCli, type CliRun } from './cli.js';

const snaps = expectedSnapshots();
const pxarName = (files: Record<string, unknown>): string | undefined => Object.keys(files).find((n) => n.endsWith('.pxar.didx'));
/** The encrypted snapshot whose pxar archive has the most chunks. */
const victim = snaps
  .filter((s) => s.crypt_mode === 'encrypt' && pxarName(s.files) !== undefined)
  .sort((a, b) => b.files[pxarName(b.files)!]!.chunks!.length - a.files[pxarName(a.files)!]!.chunks!.length)[0]!;
const archive = pxarName(victim.files)!;
const chunks = victim.files[archive]!.chunks!;
const { ns, ref } = splitSnapshotPath(victim.path);
const refText = formatSnapshotRef(ref);
const nsArgs = ns.length > 0 ? ['--ns', ns.join('/')] : [];
/** A middle chunk whose digest occurs once in the index. */
const damagedChunk = chunks.find((c, i) => i >= chunks.length >> 1 && chunks.filter((d) => d.digest === c.digest).length === 1) ?? chunks[0]!;
/** Another chunk with other content, to swap in. */
const otherChunk = chunks.find((c) => c.digest !== damagedChunk.digest && c.plaintext_sha256 !== damagedChunk.plaintext_sha256)!;
/** Another snapshot with the same crypt mode, for the foreign-manifest fixture. */
const foreign = snaps.find((s) => s.crypt_mode === victim.crypt_mode && s.path !== victim.path)!;

/** kdf-less copy of the vector key: same key, no scrypt cost per CLI run. */
const plainKeyFile = join(keysDir, 'key-none.json');
const WRONG_PASSPHRASE = 'not the passphrase 7f3a';

const chunkPath = (root: string, digest: string): string => join(root, '.chunks', digest.slice(0, 4), digest);
const chunkRel = (digest: string): string => `.chunks/${digest.slice(0, 4)}/${digest}`;
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function patchChunk(root: string, edit: (raw: Buffer) => Buffer | void): Promise<void> {
  const p = chunkPath(root, damagedChunk.digest);
  const raw = await readFile(p);
  await writeFile(p, edit(raw) ?? raw);
}

async function rewriteManifest(root: string, edit: (text: string) => string): Promise<void> {
  const p = join(root, victim.path, 'index.json.blob');
  const text = decodeBlob(await readFile(p), { name: p }).toString('utf8');
  await writeFile(p, encodeBlob(Buffer.from(edit(text)), { compress: true }));
}

interface Fixture {
  /** What is damaged. */
  name: string;
  /** The typed error it must produce. */
  error: typeof PbsfsError;
  exit: number;
  /** Matches the error message (library and CLI). */
  message: RegExp;
  /** Substrings every message must contain (the damaged file, and what else identifies it). */
  names: () => string[];
  damage(root: string): Promise<void>;
  /** Key file and passphrase (default: the vector key, no passphrase needed). */
  keyFile?: string;
  passphrase?: string;
  /** Only the manifest/key is involved: the error comes before any archive byte. */
  early?: boolean;
}

let vectorFp = '';
let otherFp = '';

const FIXTURES: Fixture[] = [
  {
    name: 'missing chunk',
    error: NotFoundError,
    exit: 4,
    message: /no such file|missing|not found/i,
    names: () => [archive, damagedChunk.digest, chunkRel(damagedChunk.digest)],
    damage: (root) => rm(chunkPath(root, damagedChunk.digest)),
  },
  {
    name: 'bit flip in the chunk ciphertext (CRC mismatch)',
    error: IntegrityError,
    exit: 3,
    message: /CRC/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[raw.length - 1]! ^= 0x01)),
  },
  {
    name: 'bit flip in the chunk ciphertext with a matching CRC (GCM tag mismatch)',
    error: CryptoError,
    exit: 2,
    message: /GCM|decrypt/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) =>
      patchChunk(root, (raw) => {
        raw[raw.length >> 1]! ^= 0x40;
        raw.writeUInt32LE(crc32(raw.subarray(44)), 8);
      }),
  },
  {
    name: 'bit flip in the chunk GCM tag',
    error: CryptoError,
    exit: 2,
    message: /GCM|decrypt/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[12 + 16 + 3]! ^= 0x01)),
  },
  {
    name: 'bit flip in the chunk IV',
    error: CryptoError,
    exit: 2,
    message: /GCM|decrypt/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[12 + 5]! ^= 0x80)),
  },
  {
    name: 'bit flip in the chunk CRC field',
    error: IntegrityError,
    exit: 3,
    message: /CRC/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[9]! ^= 0x10)),
  },
  {
    name: 'bit flip in the chunk header magic',
    error: FormatError,
    exit: 3,
    message: /magic/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => patchChunk(root, (raw) => void (raw[0]! ^= 0x01)),
  },
  {
    name: 'chunk swapped for another valid chunk (digest mismatch)',
    error: IntegrityError,
    exit: 3,
    message: /digest mismatch|decodes to .*expected|expected .* bytes/,
    names: () => [archive, damagedChunk.digest],
    damage: (root) => copyFile(chunkPath(root, otherChunk.digest), chunkPath(root, damagedChunk.digest)),
  },
  {
    name: 'unencrypted chunk inside an encrypted index (crypt mode mismatch)',
    error: IntegrityError,
    exit: 3,
    message: /crypt mode/,
    names: () => [archive, damagedChunk.digest],
    damage: async (root) => {
      const key = await loadVectorKey();
      await patchChunk(root, (raw) => encodeBlob(decodeBlob(raw, { name: 'chunk', crypt: key }), { compress: true }));
    },
  },
  {
    name: 'truncated index (format error)',
    error: FormatError,
    exit: 3,
    message: /truncat|size|short|entries|length|multiple/i,
    names: () => [`${victim.path}/${archive}`],
    damage: async (root) => {
      const p = join(root, victim.path, archive);
      await truncate(p, (await readFile(p)).length - 7);
    },
    early: true,
  },
  {
    name: 'index checksum mismatch',
    error: IntegrityError,
    exit: 3,
    message: /csum|checksum/i,
    names: () => [`${victim.path}/${archive}`, victim.files[archive]!.index_csum!],
    damage: async (root) => {
      const p = join(root, victim.path, archive);
      const raw = await readFile(p);
      raw[4096 + 8 + 5]! ^= 0xff; // inside the first entry's digest
      await writeFile(p, raw);
    },
    early: true,
  },
  {
    name: 'tampered manifest signature',
    error: IntegrityError,
    exit: 3,
    message: /signature/,
    names: () => [`${victim.path}/index.json.blob`],
    damage: (root) =>
      rewriteManifest(root, (t) => t.replace(/"signature": "(.)/, (_m, c: string) => `"signature": "${c === '0' ? '1' : '0'}`)),
    early: true,
  },
  {
    name: 'manifest of another snapshot',
    error: IntegrityError,
    exit: 3,
    message: /snapshot|manifest/,
    names: () => [victim.path, foreign.path],
    damage: (root) => copyFile(join(root, foreign.path, 'index.json.blob'), join(root, victim.path, 'index.json.blob')),
    early: true,
  },
  {
    name: 'snapshot directory without manifest',
    error: NotFoundError,
    exit: 4,
    message: /manifest|index\.json\.blob|not found|no such/i,
    names: () => ['index.json.blob'],
    damage: (root) => rm(join(root, victim.path, 'index.json.blob')),
    early: true,
  },
  {
    name: 'wrong key',
    error: CryptoError,
    exit: 2,
    message: /wrong key/,
    names: () => [vectorFp, otherFp],
    damage: async () => {},
    keyFile: join(keysDir, 'other-key-none.json'),
    early: true,
  },
  {
    name: 'wrong passphrase',
    error: CryptoError,
    exit: 2,
    message: /decrypt the key|passphrase/,
    names: () => [join(keysDir, 'key-pbkdf2.json')],
    damage: async () => {},
    keyFile: join(keysDir, 'key-pbkdf2.json'),
    passphrase: WRONG_PASSPHRASE,
    early: true,
  },
];

let trueArchive: Buffer;
let refRestore: DirectoryResult;
const temps: DirectoryResult[] = [];

beforeAll(async () => {
  vectorFp = formatFingerprint((await loadVectorKey()).fingerprint, 'short');
  otherFp = formatFingerprint((await loadOtherKey()).fingerprint, 'short');
  const cat = await runCli(['--repository', datastoreDir, '--keyfile', plainKeyFile, ...nsArgs, 'cat', refText, archive]);
  expect(cat.code, cat.stderr).toBe(0);
  expect(sha256(cat.stdout)).toBe(archiveFacts(victim.files[archive]!).sha256);
  trueArchive = cat.stdout;
  refRestore = await tmpDir({ unsafeCleanup: true, prefix: 'pbsfs-ref-restore-' });
  const r = await runCli(['--repository', datastoreDir, '--keyfile', plainKeyFile, ...nsArgs, 'restore', refText, archive, join(refRestore.path, 't'), '--no-xattrs']);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await refRestore?.cleanup();
  for (const t of temps) await t.cleanup();
});

/** Every file restored from a damaged store is a prefix of the true file; links are right. */
async function expectRestoredPrefixes(got: Buffer, want: Buffer): Promise<number> {
  let checked = 0;
  let names: Buffer[];
  try {
    names = await readdir(got, { encoding: 'buffer' });
  } catch {
    return 0; // nothing restored
  }
  const sub = (d: Buffer, n: Buffer): Buffer => Buffer.concat([d, Buffer.from('/'), n]);
  for (const n of names) {
    const g = sub(got, n);
    const w = sub(want, n);
    const gs = await lstat(g);
    const ws = await lstat(w);
    if (gs.isDirectory()) {
      expect(ws.isDirectory(), `${g.toString()} is a directory only in the damaged restore`).toBe(true);
      checked += await expectRestoredPrefixes(g, w);
    } else if (gs.isSymbolicLink()) {
      expect(await readlink(g)).toBe(await readlink(w));
    } else if (gs.isFile()) {
      const gb = await readFile(g);
      const wb = await readFile(w);
      expect(gb.length <= wb.length && wb.subarray(0, gb.length).equals(gb), `${g.toString()} holds bytes the archive does not have`).toBe(true);
      checked++;
    }
  }
  return checked;
}

async function libraryError(root: string, f: Fixture): Promise<unknown> {
  try {
    const { crypt } = await loadKeyFile(f.keyFile ?? plainKeyFile, async () => f.passphrase ?? '');
    const ds = await Datastore.open(root);
    const snap = await Snapshot.open(ds, ns, ref, { crypt, cacheBytes: 0 });
    const { readAt } = await snap.openIndex(archive);
    for (let off = 0; off < readAt.size; off += 1 << 20) await readAt.readAt(off, Math.min(1 << 20, readAt.size - off));
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectMessage(where: string, text: string, f: Fixture): void {
  expect(text, `${where}: ${text}`).toMatch(f.message);
  for (const n of f.names()) expect(text, `${where} does not name ${n}`).toContain(n);
  if (f.passphrase !== undefined) expect(text).not.toContain(f.passphrase);
}

describe.each(FIXTURES.map((f) => [f.name, f] as const))('damaged datastore: %s', (_n, f) => {
  let copy: DatastoreCopy;
  beforeAll(async () => {
    copy = await copyDatastore();
    await f.damage(copy.root);
  });
  afterAll(async () => {
    await copy.cleanup();
  });

  const cli = (args: string[]): Promise<CliRun> =>
    runCli(['--repository', copy.root, '--keyfile', f.keyFile ?? plainKeyFile, ...nsArgs, ...args], {
      env: f.passphrase !== undefined ? { PBS_ENCRYPTION_PASSWORD: f.passphrase } : {},
    });

  it(`library: ${f.error.name} naming the file`, async () => {
    const e = await libraryError(copy.root, f);
    expect(e).toBeInstanceOf(f.error);
    expectMessage('library', (e as Error).message, f);
  });

  it(`cat: exit ${f.exit}, one line naming the file, stdout a true prefix`, async () => {
    const r = await cli(['cat', refText, archive]);
    expect(r.code, r.stderr).toBe(f.exit);
    expectMessage('cat', errorLine(r), f);
    expect(r.stdout.length).toBeLessThan(trueArchive.length);
    expect(trueArchive.subarray(0, r.stdout.length).equals(r.stdout), 'cat wrote bytes that are not the archive').toBe(true);
    if (f.early) expect(r.stdout.length).toBe(0);
  });

  it('verify: fails (exit 3, one line), the report names the file and the problem', async () => {
    const r = await cli(['--output-format', 'json', 'verify', refText]);
    expect(r.code, r.stderr).toBe(3);
    expect(errorLine(r)).toMatch(/verification failed/);
    const [result] = JSON.parse(r.stdout.toString()) as { ok: boolean; error?: string; files: { filename: string; errors: string[] }[] }[];
    expect(result!.ok).toBe(false);
    const text = [result!.error ?? '', ...result!.files.flatMap((x) => x.errors)].join('\n');
    expectMessage('verify', text, f);
  });

  it(`restore: exit ${f.exit}, one line naming the file, only true bytes restored`, async () => {
    const t = await tmpDir({ unsafeCleanup: true, prefix: 'pbsfs-damaged-restore-' });
    temps.push(t);
    const r = await cli(['restore', refText, archive, join(t.path, 't'), '--no-xattrs']);
    expect(r.code, r.stderr).toBe(f.exit);
    expectMessage('restore', errorLine(r), f);
    await expectRestoredPrefixes(Buffer.from(join(t.path, 't')), Buffer.from(join(refRestore.path, 't')));
  });
});
