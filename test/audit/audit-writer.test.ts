/**
 * The audit on a datastore written by pbsfs's own writer: every crypt mode, two keys in one
 * group, a namespace and a master-key recovery blob.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { auditDatastore, type AuditSnapshot } from '../../src/audit/audit.js';
import { CryptConfig, formatFingerprint } from '../../src/crypto/crypt-config.js';
import { encryptKeyForMaster, masterKeyConfigFor } from '../../src/crypto/master-key.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { runBackup } from '../../src/writer/backup.js';
import { keysDir } from '../helpers/paths.js';

const keyA = CryptConfig.fromKey(randomBytes(32));
const keyB = CryptConfig.fromKey(randomBytes(32));
const fpA = formatFingerprint(keyA.fingerprint);
const fpB = formatFingerprint(keyB.fingerprint);

let tmp: DirectoryResult;
let repo: string;
const made: Record<string, string> = {};

beforeAll(async () => {
  tmp = await tmpDir({ unsafeCleanup: true });
  const src = join(tmp.path, 'src');
  mkdirSync(join(src, 'etc'), { recursive: true });
  writeFileSync(join(src, 'etc', 'hostname'), 'bench\n');
  writeFileSync(join(src, 'data.bin'), randomBytes(100_000));
  repo = join(tmp.path, 'store');
  const base = { repository: repo, source: src, prefixDirs: 'lazy' as const, xattrs: false };
  const rsa = encryptKeyForMaster(masterKeyConfigFor(keyA, '2024-01-01T00:00:00+00:00'), readFileSync(join(keysDir, 'master-public.pem'), 'utf8'));
  made.encA = runBackup({ ...base, backupType: 'host', backupId: 'web', backupTime: 1_700_000_000, crypt: keyA }).snapshot;
  made.encB = runBackup({ ...base, backupType: 'host', backupId: 'web', backupTime: 1_700_000_100, crypt: keyB }).snapshot;
  made.signOnly = runBackup({ ...base, backupType: 'ct', backupId: '300', backupTime: 1_700_000_000, crypt: keyA, cryptMode: 'sign-only' }).snapshot;
  made.plain = runBackup({ ...base, backupType: 'ct', backupId: '301', backupTime: 1_700_000_000 }).snapshot;
  made.recoverable = runBackup({
    ...base,
    ns: ['prod'],
    backupType: 'host',
    backupId: 'db',
    backupTime: 1_700_000_000,
    crypt: keyA,
    masterKeyCiphertext: rsa,
  }).snapshot;
});

afterAll(async () => {
  await tmp.cleanup();
});

function get(snaps: AuditSnapshot[], snapshot: string, ns = ''): AuditSnapshot {
  const s = snaps.find((x) => x.snapshot === snapshot && x.ns === ns);
  expect(s, snapshot).toBeDefined();
  return s!;
}

describe('audit of a writer-made datastore', () => {
  it('reports modes, keys, recovery blobs and groups without a key', async () => {
    const r = await auditDatastore(await LocalDatastore.open(repo));
    expect(r.snapshots).toHaveLength(5);
    const a = get(r.snapshots, made.encA!);
    expect(a).toMatchObject({ 'crypt-mode': 'encrypt', 'key-fingerprint': fpA, 'master-key-blob': false, signature: 'no key given' });
    expect(a.flags).toEqual(['no-recovery-blob']);
    expect(get(r.snapshots, made.encB!)['key-fingerprint']).toBe(fpB);
    expect(get(r.snapshots, made.signOnly!)).toMatchObject({ 'crypt-mode': 'sign-only', 'key-fingerprint': fpA, flags: ['sign-only'] });
    expect(get(r.snapshots, made.plain!)).toMatchObject({ 'crypt-mode': 'none', 'key-fingerprint': null, signature: 'unsigned', flags: ['unencrypted'] });
    const rec = get(r.snapshots, made.recoverable!, 'prod');
    expect(rec).toMatchObject({ 'crypt-mode': 'encrypt', 'master-key-blob': true, flags: [] });
    expect(rec.files.map((f) => f.filename)).toContain('rsa-encrypted.key.blob');

    const web = r.groups.find((g) => g['backup-type'] === 'host' && g['backup-id'] === 'web')!;
    expect(web.flags).toEqual(['group-mixed-keys']);
    expect(web['key-fingerprints']).toEqual([fpA, fpB].sort());
    expect(r.keys.map((k) => k['key-fingerprint'])).toEqual([...[fpA, fpB].sort(), null]);
    expect(r.keys.find((k) => k['key-fingerprint'] === fpA)!.snapshots).toBe(3);
  });

  it('verifies signatures with key A and flags the snapshot made with key B', async () => {
    const r = await auditDatastore(await LocalDatastore.open(repo), { crypt: keyA });
    expect(get(r.snapshots, made.encA!).signature).toBe('verified');
    expect(get(r.snapshots, made.signOnly!).signature).toBe('verified');
    expect(get(r.snapshots, made.recoverable!, 'prod').signature).toBe('verified');
    const b = get(r.snapshots, made.encB!);
    expect(b.signature).toBe('other key');
    expect(b.flags).toContain('fingerprint-mismatch');
    expect(r.keys.find((k) => k['key-fingerprint'] === fpA)!['matches-given-key']).toBe(true);
    expect(r.keys.find((k) => k['key-fingerprint'] === fpB)!['matches-given-key']).toBe(false);
  });

  it('finds nothing to flag in a namespace holding only a recoverable encrypted snapshot', async () => {
    const r = await auditDatastore(await LocalDatastore.open(repo), { crypt: keyA, ns: ['prod'] });
    expect(r.snapshots).toHaveLength(1);
    expect(r.findings).toEqual([]);
  });
});
