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
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { copyDatastore, type DatastoreCopy } from '../helpers/datastore-copy.js';
import { archiveFacts } from '../helpers/datastore-expected.js';
import { datastoreDir } from '../helpers/paths.js';
import { errorLine, runCli, type CliRun } from './cli.js';
import { FIXTURES, archive, loadFingerprints, ns, nsArgs, plainKeyFile, ref, refText, sha256, victim, type Fixture } from './fixtures.js';

let trueArchive: Buffer;
let refRestore: DirectoryResult;
const temps: DirectoryResult[] = [];

beforeAll(async () => {
  await loadFingerprints();
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
    const ds = await LocalDatastore.open(root);
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
