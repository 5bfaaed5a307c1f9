import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir, type DirectoryResult } from 'tmp-promise';
import { auditDatastore, type AuditFlag, type AuditSnapshot } from '../../src/audit/audit.js';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { decodeBlob, encodeBlob } from '../../src/blob/data-blob.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { parseNamespace } from '../../src/store/backup-ref.js';
import type { CryptConfig } from '../../src/crypto/crypt-config.js';
import { cliPath, datastoreDir, keysDir, vectorsDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';

const run = promisify(execFile);

interface VectorManifest {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  files: { filename: string; 'crypt-mode': string; size: number }[];
  signature?: string | null;
  unprotected?: { 'key-fingerprint'?: string };
}
interface VectorSnapshot {
  /** `[ns/NAME/]TYPE/ID/TIME` as in expected.json. */
  path: string;
  ns: string;
  snapshot: string;
  cryptMode: string;
  manifest: VectorManifest;
}

const keysExpected = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8')) as {
  fingerprint_full: string;
  other_key_fingerprint_full: string;
};
const dsExpected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as {
  snapshots: { path: string; crypt_mode: string }[];
};

/** Every vector snapshot with its plain manifest copy (datastore/manifests/<path>/index.json). */
const vectorSnapshots: VectorSnapshot[] = dsExpected.snapshots.map((s) => {
  const m = /^((?:ns\/[^/]+\/)*)([^/]+\/[^/]+\/[^/]+)$/.exec(s.path)!;
  const ns = m[1]!.split('/').filter((_, i) => i % 2 === 1).join('/');
  const manifest = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'manifests', s.path, 'index.json'), 'utf8')) as VectorManifest;
  return { path: s.path, ns, snapshot: m[2]!, cryptMode: s.crypt_mode, manifest };
});

function modeOf(v: VectorSnapshot): string {
  const modes = new Set(v.manifest.files.map((f) => f['crypt-mode']));
  return modes.size === 1 ? [...modes][0]! : 'mixed';
}

function hasRecovery(v: VectorSnapshot): boolean {
  return v.manifest.files.some((f) => f.filename === 'rsa-encrypted.key.blob');
}

/** The flags the audit must raise for a vector snapshot, derived from its manifest. */
function expectedFlags(v: VectorSnapshot, key?: string): AuditFlag[] {
  const flags: AuditFlag[] = [];
  const mode = modeOf(v);
  if (mode === 'none') flags.push('unencrypted');
  if (mode === 'sign-only') flags.push('sign-only');
  if (mode === 'encrypt' && !hasRecovery(v)) flags.push('no-recovery-blob');
  const fp = v.manifest.unprotected?.['key-fingerprint'];
  if (key !== undefined && fp !== undefined && fp !== key) flags.push('fingerprint-mismatch');
  return flags;
}

function find(snaps: AuditSnapshot[], v: VectorSnapshot): AuditSnapshot {
  const s = snaps.find((x) => x.ns === v.ns && x.snapshot === v.snapshot);
  expect(s, `audit lists ${v.path}`).toBeDefined();
  return s!;
}

async function makeWritable(path: string): Promise<void> {
  const st = await stat(path);
  await chmod(path, st.isDirectory() ? 0o755 : 0o644);
  if (st.isDirectory()) for (const e of await readdir(path)) await makeWritable(join(path, e));
}

let scryptKey: CryptConfig;
let otherKey: CryptConfig;

beforeAll(async () => {
  scryptKey = (await loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE)).crypt;
  otherKey = (await loadKeyFile(join(keysDir, 'other-key-none.json'))).crypt;
});

describe('audit of the vector datastore', () => {
  it('reports every snapshot as its manifest says, without a key', async () => {
    const r = await auditDatastore(await LocalDatastore.open(datastoreDir));
    expect(r.snapshots).toHaveLength(vectorSnapshots.length);
    expect(r['given-key-fingerprint']).toBeNull();
    for (const v of vectorSnapshots) {
      const s = find(r.snapshots, v);
      expect(s['crypt-mode']).toBe(v.cryptMode);
      expect(s['crypt-mode']).toBe(modeOf(v));
      expect(s['key-fingerprint']).toBe(v.manifest.unprotected?.['key-fingerprint'] ?? null);
      if (v.cryptMode !== 'none') expect(s['key-fingerprint']).toBe(keysExpected.fingerprint_full);
      expect(s['master-key-blob']).toBe(hasRecovery(v));
      expect(s.size).toBe(v.manifest.files.reduce((a, f) => a + f.size, 0));
      expect(s.signature).toBe(v.manifest.signature ? 'no key given' : 'unsigned');
      expect(s.flags).toEqual(expectedFlags(v));
      expect(s['backup-time']).toBe(v.manifest['backup-time']);
    }
    // The master-key snapshot is the only encrypted one with a recovery path.
    expect(r.snapshots.filter((s) => s['master-key-blob']).map((s) => s.snapshot)).toEqual(
      vectorSnapshots.filter(hasRecovery).map((v) => v.snapshot),
    );
  });

  it('groups by key and flags groups that mix modes', async () => {
    const r = await auditDatastore(await LocalDatastore.open(datastoreDir));
    const keyed = vectorSnapshots.filter((v) => v.manifest.unprotected?.['key-fingerprint'] !== undefined);
    const k = r.keys.find((x) => x['key-fingerprint'] === keysExpected.fingerprint_full)!;
    expect(k.snapshots).toBe(keyed.length);
    expect(k['matches-given-key']).toBeNull();
    const noKey = r.keys.find((x) => x['key-fingerprint'] === null)!;
    expect(noKey.snapshots).toBe(vectorSnapshots.length - keyed.length);

    const groupModes = new Map<string, Set<string>>();
    for (const v of vectorSnapshots) {
      const g = `${v.ns}|${v.snapshot.split('/').slice(0, 2).join('/')}`;
      groupModes.set(g, (groupModes.get(g) ?? new Set()).add(v.cryptMode));
    }
    expect(r.groups).toHaveLength(groupModes.size);
    for (const g of r.groups) {
      const modes = groupModes.get(`${g.ns}|${g['backup-type']}/${g['backup-id']}`)!;
      expect(new Set(g['crypt-modes'])).toEqual(modes);
      expect(g.flags.includes('group-mixed-modes')).toBe(modes.size > 1);
      expect(g.flags).not.toContain('group-mixed-keys');
    }
    expect(r.summary.findings).toBe(r.findings.length);
    expect(r.summary.findings).toBeGreaterThan(0);
  });

  it('verifies signatures with the right key', async () => {
    const r = await auditDatastore(await LocalDatastore.open(datastoreDir), { crypt: scryptKey });
    expect(r['given-key-fingerprint']).toBe(keysExpected.fingerprint_full);
    for (const v of vectorSnapshots) {
      const s = find(r.snapshots, v);
      expect(s.signature).toBe(v.manifest.signature ? 'verified' : 'unsigned');
      expect(s.flags).toEqual(expectedFlags(v, keysExpected.fingerprint_full));
    }
    expect(r.keys.find((x) => x['key-fingerprint'] === keysExpected.fingerprint_full)!['matches-given-key']).toBe(true);
  });

  it('flags every keyed snapshot when another key is given', async () => {
    const r = await auditDatastore(await LocalDatastore.open(datastoreDir), { crypt: otherKey });
    expect(r['given-key-fingerprint']).toBe(keysExpected.other_key_fingerprint_full);
    for (const v of vectorSnapshots) {
      const s = find(r.snapshots, v);
      const fp = v.manifest.unprotected?.['key-fingerprint'];
      expect(s.signature).toBe(v.manifest.signature ? (fp !== undefined ? 'other key' : 'mismatch') : 'unsigned');
      expect(s.flags).toEqual(expectedFlags(v, keysExpected.other_key_fingerprint_full));
      if (fp !== undefined) expect(s.flags).toContain('fingerprint-mismatch');
    }
  });

  it('never reads a chunk: a copy without any chunk file gives the same report', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const store = join(tmp.path, 'store');
      await mkdir(join(store, '.chunks'), { recursive: true });
      for (const v of vectorSnapshots) await cp(join(datastoreDir, v.path), join(store, v.path), { recursive: true });
      const original = await auditDatastore(await LocalDatastore.open(datastoreDir), { crypt: scryptKey });
      const copy = await auditDatastore(await LocalDatastore.open(store), { crypt: scryptKey });
      expect({ ...copy, datastore: '' }).toEqual({ ...original, datastore: '' });
      await makeWritable(tmp.path);
    } finally {
      await tmp.cleanup();
    }
  });

  it('limits itself to one namespace with ns', async () => {
    const inNs = vectorSnapshots.filter((v) => v.ns !== '');
    expect(inNs.length).toBeGreaterThan(0);
    const ns = inNs[0]!.ns;
    const r = await auditDatastore(await LocalDatastore.open(datastoreDir), { ns: parseNamespace(ns) });
    expect(r.namespace).toBe(ns);
    expect(r.snapshots.map((s) => s.snapshot).sort()).toEqual(
      vectorSnapshots.filter((v) => v.ns === ns || v.ns.startsWith(`${ns}/`)).map((v) => v.snapshot).sort(),
    );
  });
});

describe('audit of damaged and unusual datastores', () => {
  let tmp: DirectoryResult;
  let store: string;

  beforeAll(async () => {
    tmp = await tmpDir({ unsafeCleanup: true });
    store = join(tmp.path, 'store');
    await cp(datastoreDir, store, { recursive: true });
    await makeWritable(store);
  });
  afterAll(async () => {
    await makeWritable(tmp.path);
    await tmp.cleanup();
  });

  function snapDir(v: VectorSnapshot): string {
    return join(store, v.path);
  }

  async function rewriteManifest(v: VectorSnapshot, edit: (m: Record<string, unknown>) => void): Promise<void> {
    const file = join(snapDir(v), 'index.json.blob');
    const m = JSON.parse(decodeBlob(readFileSync(file), { name: file }).toString('utf8')) as Record<string, unknown>;
    edit(m);
    await rm(file);
    await writeFile(file, encodeBlob(Buffer.from(JSON.stringify(m, null, 2)), { compress: true }));
  }

  it('flags tampering, unreadable and missing manifests, mixed modes and mixed keys', async () => {
    const signed = vectorSnapshots.filter((v) => v.manifest.signature && v.ns === '');
    const [tampered, garbled, keySwapped] = [signed[0]!, signed[1]!, signed[2]!];
    const unsigned = vectorSnapshots.find((v) => !v.manifest.signature && v.ns === '')!;
    const incompleteV = vectorSnapshots.find((v) => v.ns !== '')!;

    // A signed manifest whose protected part changed after signing.
    await rewriteManifest(tampered, (m) => {
      (m.files as { size: number }[])[0]!.size += 1;
    });
    // Bytes that are no manifest at all.
    await rm(join(snapDir(garbled), 'index.json.blob'));
    await writeFile(join(snapDir(garbled), 'index.json.blob'), Buffer.from('not a blob at all'));
    // Another key's fingerprint in the unprotected part.
    await rewriteManifest(keySwapped, (m) => {
      (m.unprotected as Record<string, string>)['key-fingerprint'] = keysExpected.other_key_fingerprint_full;
    });
    // An unsigned manifest whose files disagree on the crypt mode.
    await rewriteManifest(unsigned, (m) => {
      const files = m.files as { 'crypt-mode': string }[];
      files[0]!['crypt-mode'] = 'encrypt';
      if (files.length === 1) files.push({ ...files[0]!, filename: 'extra.blob', 'crypt-mode': 'none' } as never);
    });
    // A snapshot directory without a manifest (backup still running).
    await rm(join(snapDir(incompleteV), 'index.json.blob'));
    // A manifest copied into another snapshot's directory.
    const copiedTo = join(store, 'host', 'copied', '2020-01-01T00:00:00Z');
    await mkdir(copiedTo, { recursive: true });
    await cp(join(datastoreDir, tampered.path, 'index.json.blob'), join(copiedTo, 'index.json.blob'));

    const r = await auditDatastore(await LocalDatastore.open(store), { crypt: scryptKey });
    const t = find(r.snapshots, tampered);
    expect(t.signature).toBe('mismatch');
    expect(t.flags).toContain('signature-mismatch');

    const g = find(r.snapshots, garbled);
    expect(g.flags).toEqual(['unreadable-manifest']);
    expect(g.error).toContain('index.json.blob');
    expect(g['crypt-mode']).toBeNull();

    const k = find(r.snapshots, keySwapped);
    expect(k['key-fingerprint']).toBe(keysExpected.other_key_fingerprint_full);
    expect(k.flags).toContain('fingerprint-mismatch');
    expect(k.signature).toBe('other key');
    const group = r.groups.find((x) => x.ns === '' && `${x['backup-type']}/${x['backup-id']}` === keySwapped.snapshot.split('/').slice(0, 2).join('/'))!;
    expect(group.flags).toContain('group-mixed-keys');

    const u = find(r.snapshots, unsigned);
    expect(u['crypt-mode']).toBe('mixed');
    expect(u.flags).toEqual(expect.arrayContaining(['mixed-crypt-mode', 'no-recovery-blob', 'no-key-fingerprint', 'unsigned-manifest']));

    const inc = find(r.snapshots, incompleteV);
    expect(inc.complete).toBe(false);
    expect(inc.flags).toEqual(['incomplete']);

    const c = r.snapshots.find((x) => x.snapshot === 'host/copied/2020-01-01T00:00:00Z')!;
    expect(c.flags).toContain('manifest-mismatch');
    expect(c.error).toContain(tampered.snapshot);

    for (const f of ['manifest-mismatch', 'signature-mismatch', 'unreadable-manifest', 'incomplete', 'group-mixed-keys', 'mixed-crypt-mode'] as const) {
      expect(r.findings.some((x) => x.flag === f)).toBe(true);
    }
  });
});

describe('pbsfs audit', () => {
  it('exits 1 with valid JSON when the vector datastore has findings', async () => {
    const p = run(process.execPath, [cliPath, '--repository', datastoreDir, '--output-format', 'json', 'audit']);
    const err = (await p.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code: number; stdout: string } | undefined;
    expect(err?.code).toBe(1);
    const j = JSON.parse(err!.stdout) as { snapshots: { 'crypt-mode': string; 'backup-type': string }[]; findings: unknown[] };
    expect(j.snapshots).toHaveLength(vectorSnapshots.length);
    expect(j.snapshots.every((s) => typeof s['backup-type'] === 'string')).toBe(true);
    expect(j.findings.length).toBeGreaterThan(0);
  });

  it('exits 0 and says nothing is flagged for an encrypted, recoverable datastore', async () => {
    const keep = vectorSnapshots.filter((v) => v.cryptMode === 'encrypt' && hasRecovery(v) && v.ns === '');
    expect(keep.length).toBeGreaterThan(0);
    const tmp = await tmpDir({ unsafeCleanup: true });
    try {
      const store = join(tmp.path, 'store');
      await mkdir(join(store, '.chunks'), { recursive: true });
      for (const v of keep) await cp(join(datastoreDir, v.path), join(store, v.path), { recursive: true });
      const { stdout } = await run(process.execPath, [cliPath, '--repository', store, '--keyfile', join(keysDir, 'key-none.json'), 'audit']);
      expect(stdout).toMatch(/nothing flagged/);
      expect(stdout).toContain('verified');
      await makeWritable(tmp.path);
    } finally {
      await tmp.cleanup();
    }
  });

  it('fails with exit status >= 2 when the datastore is missing', async () => {
    const missing = join(vectorsDir, 'no-such-datastore');
    expect(existsSync(missing)).toBe(false);
    const p = run(process.execPath, [cliPath, '--repository', missing, 'audit']);
    const err = (await p.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code: number; stderr: string } | undefined;
    expect(err?.code).toBeGreaterThanOrEqual(2);
    expect(err?.stderr).toMatch(/^pbsfs: .*no-such-datastore/);
  });
});
