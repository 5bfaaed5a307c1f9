/**
 * The snapshot commands as a user runs them: `node dist/src/cli/main.js ...` in a child process
 * (the suite builds first), against the vector datastore and damaged temp copies.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatSnapshotRef } from '../../src/store/backup-ref.js';
import { copyDatastore } from '../helpers/datastore-copy.js';
import { archiveFacts, expectedSnapshots, splitSnapshotPath } from '../helpers/datastore-expected.js';
import { VECTOR_PASSPHRASE, cliPath, datastoreDir, keysDir } from '../helpers/paths.js';

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function run(args: string[], opts: { env?: Record<string, string>; repo?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, '--repository', opts.repo ?? datastoreDir, ...args], {
      env: { ...process.env, PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE, PBS_REPOSITORY: '', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
  });
}

/** key-none.json holds the same key without a KDF: no scrypt cost per run. */
const key = ['--keyfile', join(keysDir, 'key-none.json')];
/** The passphrase-protected form (PBS_ENCRYPTION_PASSWORD), used where that path matters. */
const scryptKey = ['--keyfile', join(keysDir, 'key-scrypt.json')];
const otherKey = ['--keyfile', join(keysDir, 'other-key-none.json')];
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const snaps = expectedSnapshots();
const rootSnaps = snaps.filter((s) => !s.namespace);
const refOf = (path: string): string => formatSnapshotRef(splitSnapshotPath(path).ref);
const encImage = snaps.find((s) => s.crypt_mode === 'encrypt' && Object.keys(s.files).some((f) => f.endsWith('.fidx')))!;
const plainImage = snaps.find((s) => s.crypt_mode === 'none' && Object.keys(s.files).some((f) => f.endsWith('.fidx')))!;
const imageName = (s: typeof encImage): string => Object.keys(s.files).find((f) => f.endsWith('.fidx'))!;

describe('pbsfs snapshots', () => {
  it('lists every root-namespace snapshot with upstream JSON fields', async () => {
    const r = await run(['--output-format', 'json', 'snapshots']);
    expect(r.code).toBe(0);
    const items = JSON.parse(r.stdout.toString()) as Record<string, unknown>[];
    expect(items.map((i) => `${i['backup-type']}/${i['backup-id']}/${i['backup-time']}`).sort()).toEqual(
      rootSnaps.map((s) => {
        const { ref } = splitSnapshotPath(s.path);
        return `${ref.type}/${ref.id}/${ref.time}`;
      }).sort(),
    );
    for (const it of items) {
      const s = rootSnaps.find((x) => refOf(x.path) === formatSnapshotRef({ type: it['backup-type'] as 'vm', id: it['backup-id'] as string, time: it['backup-time'] as number }))!;
      // Upstream's `snapshot list` shape: objects with filename, crypt-mode and size.
      const files = it.files as { filename: string; 'crypt-mode': string; size: number }[];
      expect(files.map((f) => f.filename).sort()).toEqual(Object.keys(s.files).sort());
      for (const f of files) {
        expect(['none', 'sign-only', 'encrypt']).toContain(f['crypt-mode']);
        expect(Number.isInteger(f.size)).toBe(true);
      }
      expect(it['crypt-mode']).toBe(s.crypt_mode);
      expect(typeof it.size).toBe('number');
    }
  });

  it('filters by group and by namespace; text table names every snapshot', async () => {
    const group = refOf(encImage.path).split('/').slice(0, 2).join('/');
    const r = await run(['--output-format', 'json', 'snapshots', group]);
    expect(r.code).toBe(0);
    const items = JSON.parse(r.stdout.toString()) as unknown[];
    expect(items.length).toBe(rootSnaps.filter((s) => refOf(s.path).startsWith(group + '/')).length);
    const nsSnaps = snaps.filter((s) => s.namespace);
    if (nsSnaps.length > 0) {
      const ns = nsSnaps[0]!.namespace!;
      const rn = await run(['--ns', ns, '--output-format', 'json', 'snapshots']);
      expect((JSON.parse(rn.stdout.toString()) as unknown[]).length).toBe(nsSnaps.filter((s) => s.namespace === ns).length);
    }
    const text = await run(['snapshots']);
    expect(text.code).toBe(0);
    for (const s of rootSnaps) expect(text.stdout.toString()).toContain(refOf(s.path));
  });

  it('a bad group is a usage error (exit 2)', async () => {
    const r = await run(['snapshots', 'vm/..']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^pbsfs: .*backup id/);
  });
});

describe('pbsfs files', () => {
  it('lists the manifest files with size, crypt-mode and csum', async () => {
    for (const s of snaps) {
      const { ns } = splitSnapshotPath(s.path);
      const k = s.crypt_mode === 'encrypt' ? key : [];
      const r = await run([...(ns.length ? ['--ns', ns.join('/')] : []), ...k, '--output-format', 'json', 'files', refOf(s.path)]);
      expect(r.code, r.stderr).toBe(0);
      const items = JSON.parse(r.stdout.toString()) as { filename: string; size: number; csum: string; 'crypt-mode': string }[];
      expect(items.map((i) => i.filename).sort()).toEqual(Object.keys(s.files).sort());
      for (const i of items) {
        const f = s.files[i.filename]!;
        if (i.filename === 'index.json.blob') continue;
        expect(i['crypt-mode']).toBe(s.crypt_mode);
        if (f.index_csum) {
          expect(i.csum).toBe(f.index_csum);
          expect(i.size).toBe(archiveFacts(f).size);
        } else {
          expect(i.csum).toBe(f.blob_sha256);
          expect(i.size).toBe(f.blob_size);
        }
      }
    }
  });
});

describe('pbsfs cat', () => {
  it('writes an encrypted image byte-exact (with and without extension)', async () => {
    const img = imageName(encImage);
    for (const [k, name] of [[scryptKey, img], [key, img.replace(/\.fidx$/, '')]] as const) {
      const r = await run([...k, 'cat', refOf(encImage.path), name]);
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(r.stdout)).toBe(archiveFacts(encImage.files[img]!).sha256);
    }
  });

  it('writes a plain image without a key, and blobs decoded', async () => {
    const r = await run(['cat', refOf(plainImage.path), imageName(plainImage)]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(r.stdout)).toBe(archiveFacts(plainImage.files[imageName(plainImage)]!).sha256);
    for (const s of [encImage, plainImage]) {
      const [blob, f] = Object.entries(s.files).find(([n, x]) => n !== 'index.json.blob' && x.plaintext_utf8 !== undefined)!;
      const rb = await run([...key, 'cat', refOf(s.path), blob.replace(/\.blob$/, '')]);
      expect(rb.code, rb.stderr).toBe(0);
      expect(rb.stdout.toString('utf8')).toBe(f.plaintext_utf8);
    }
  });

  it('--master-keyfile recovers the key from rsa-encrypted.key.blob', async () => {
    const s = snaps.find((x) => x.files['rsa-encrypted.key.blob'])!;
    const { ns } = splitSnapshotPath(s.path);
    const archive = Object.keys(s.files).find((n) => n.endsWith('.didx') && !n.startsWith('catalog'))!;
    const r = await run([
      ...(ns.length ? ['--ns', ns.join('/')] : []),
      '--master-keyfile',
      join(keysDir, 'master-private.pem'),
      'cat',
      refOf(s.path),
      archive,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(r.stdout)).toBe(archiveFacts(s.files[archive]!).sha256);
    // A snapshot without an RSA key copy cannot be opened that way.
    const e = await run(['--master-keyfile', join(keysDir, 'master-private.pem'), 'cat', refOf(encImage.path), imageName(encImage)]);
    expect(e.code).toBe(4);
    expect(e.stderr).toContain('rsa-encrypted.key.blob');
  });

  it('a dynamic archive streams the raw archive bytes', async () => {
    const s = snaps.find((x) => x.crypt_mode === 'sign-only' && x.files['root.pxar.didx'])!;
    const r = await run(['cat', refOf(s.path), 'root.pxar.didx']);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(r.stdout)).toBe(archiveFacts(s.files['root.pxar.didx']!).sha256);
  });

  it('an encrypted archive without a key: exit 2, fingerprint and hint on stderr, nothing on stdout', async () => {
    const r = await run(['cat', refOf(encImage.path), imageName(encImage)]);
    expect(r.code).toBe(2);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toMatch(/give --keyfile/);
    expect(r.stderr.split('\n').filter(Boolean).length).toBe(1);
  });

  it('a wrong key: exit 2 and both short fingerprints', async () => {
    const r = await run([...otherKey, 'cat', refOf(encImage.path), imageName(encImage)]);
    expect(r.code).toBe(2);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr.match(/[0-9a-f]{2}(:[0-9a-f]{2}){7}/g)?.length).toBe(2);
  });

  it('bad snapshot syntax (2), unknown snapshot (4), unknown archive (4)', async () => {
    expect((await run(['cat', 'vm/100/yesterday', 'x'])).code).toBe(2);
    expect((await run(['cat', 'vm/100/2001-01-01T00:00:00Z', 'x'])).code).toBe(4);
    const r = await run(['cat', refOf(plainImage.path), 'nope.img']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(imageName(plainImage));
  });

  it('stops quietly when the reader closes the pipe', async () => {
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, [cliPath, '--repository', datastoreDir, 'cat', refOf(plainImage.path), imageName(plainImage)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.stdout.once('data', () => child.stdout.destroy());
      child.on('error', reject);
      child.on('close', (c) => {
        expect(err).toBe('');
        resolve(c);
      });
    });
    expect(code).toBe(0);
  });
});

describe('pbsfs verify', () => {
  it('all snapshots with the key: exit 0, every file ok', async () => {
    const r = await run([...key, '--output-format', 'json', 'verify']);
    expect(r.code, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout.toString()) as { snapshot: string; ok: boolean; files: unknown[] }[];
    expect(results.map((x) => x.snapshot).sort()).toEqual(snaps.map((s) => s.path).sort());
    expect(results.every((x) => x.ok)).toBe(true);
  });

  it('one snapshot, text report; and without a key (CRC-only for encrypted data)', async () => {
    const r = await run([...key, 'verify', refOf(encImage.path)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toContain(`${imageName(encImage)}: ok`);
    const nokey = await run(['verify']);
    expect(nokey.code, nokey.stderr).toBe(0);
    expect(nokey.stdout.toString()).toMatch(/CRC only/);
  });

  it('a damaged datastore: non-zero exit, the report names the bad chunk', async () => {
    const copy = await copyDatastore();
    try {
      const c = plainImage.files[imageName(plainImage)]!.chunks![0]!;
      await rm(join(copy.root, '.chunks', c.digest.slice(0, 4), c.digest));
      const r = await run([...key, 'verify'], { repo: copy.root });
      expect(r.code).toBe(3);
      expect(r.stdout.toString()).toContain(c.digest);
      expect(r.stdout.toString()).toContain('FAILED');
      expect(r.stderr).toMatch(/verification failed/);
      const wrong = await run([...otherKey, 'verify', refOf(encImage.path)], { repo: copy.root });
      expect(wrong.code).not.toBe(0);
      expect(wrong.stdout.toString()).toMatch(/wrong key/);
    } finally {
      await copy.cleanup();
    }
  });
});
