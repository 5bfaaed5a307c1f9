/**
 * Damaged and hostile datastores (temp copies): every fault must surface as a typed error that
 * names the file, never as wrong bytes.
 */
import { createHash } from 'node:crypto';
import { copyFile, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeBlob, encodeBlob } from '../../src/blob/data-blob.js';
import { formatFingerprint, type CryptConfig } from '../../src/crypto/crypt-config.js';
import { CryptoError, FormatError, IntegrityError, NotFoundError, type PbsfsError } from '../../src/errors.js';
import { parseManifest, serializeManifest } from '../../src/manifest/manifest.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { verifySnapshot } from '../../src/snapshot/verify.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { crc32 } from '../../src/util/crc32.js';
import { copyDatastore, type DatastoreCopy } from '../helpers/datastore-copy.js';
import {
  expectedSnapshots,
  loadOtherKey,
  loadVectorKey,
  splitSnapshotPath,
  type ExpectedSnapshot,
} from '../helpers/datastore-expected.js';

let key: CryptConfig;
let other: CryptConfig;
let copy: DatastoreCopy | undefined;

beforeAll(async () => {
  key = await loadVectorKey();
  other = await loadOtherKey();
});
afterEach(async () => {
  await copy?.cleanup();
  copy = undefined;
});

/** The first snapshot in expected.json with this crypt mode and an image (.fidx) archive. */
function imageSnapshot(mode: ExpectedSnapshot['crypt_mode']): { exp: ExpectedSnapshot; image: string } {
  const exp = expectedSnapshots().find((s) => s.crypt_mode === mode && Object.keys(s.files).some((n) => n.endsWith('.fidx')))!;
  return { exp, image: Object.keys(exp.files).find((n) => n.endsWith('.fidx'))! };
}

function blobName(exp: ExpectedSnapshot): string {
  return Object.keys(exp.files).find((n) => n.endsWith('.blob') && n !== 'index.json.blob')!;
}

const chunkFile = (root: string, hex: string): string => join(root, '.chunks', hex.slice(0, 4), hex);

async function openCopy(exp: ExpectedSnapshot, crypt?: CryptConfig): Promise<Snapshot> {
  copy ??= await copyDatastore();
  const ds = await LocalDatastore.open(copy.root);
  const { ns, ref } = splitSnapshotPath(exp.path);
  return Snapshot.open(ds, ns, ref, crypt ? { crypt, cacheBytes: 0 } : { cacheBytes: 0 });
}

async function caught(p: Promise<unknown>): Promise<PbsfsError> {
  try {
    await p;
  } catch (e) {
    return e as PbsfsError;
  }
  throw new Error('expected a failure, got success');
}

describe('damaged chunks', () => {
  it('missing chunk: NotFoundError naming archive, chunk number, digest and path; other chunks still read', async () => {
    const { exp, image } = imageSnapshot('none');
    const c0 = exp.files[image]!.chunks![0]!;
    copy = await copyDatastore();
    await rm(chunkFile(copy.root, c0.digest));
    const snap = await openCopy(exp);
    const { readAt } = await snap.openIndex(image);
    const e = await caught(readAt.readAt(0, 10));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.message).toContain(`${exp.path}/${image}`);
    expect(e.message).toContain('chunk 0');
    expect(e.message).toContain(c0.digest);
    expect(e.message).toContain(`.chunks/${c0.digest.slice(0, 4)}/${c0.digest}`);
    const last = exp.files[image]!.chunks!.at(-1)!;
    const tail = await readAt.readAt(last.start, last.end - last.start);
    expect(createHash('sha256').update(tail).digest('hex')).toBe(last.plaintext_sha256);
    const report = await verifySnapshot(snap.repository, snap.ns, snap.ref, {});
    expect(report.ok).toBe(false);
    expect(report.files.find((f) => f.filename === image)!.errors.join('\n')).toContain(c0.digest);
  });

  it('bit flip in a plain chunk: IntegrityError (CRC)', async () => {
    const { exp, image } = imageSnapshot('none');
    const c = exp.files[image]!.chunks![0]!;
    copy = await copyDatastore();
    const p = chunkFile(copy.root, c.digest);
    const raw = await readFile(p);
    raw[raw.length >> 1]! ^= 0x10;
    await writeFile(p, raw);
    const { readAt } = await (await openCopy(exp)).openIndex(image);
    const e = await caught(readAt.readAt(c.start, 100));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toMatch(/CRC/);
    expect(e.message).toContain(image);
  });

  it('bit flip in an encrypted chunk with a recomputed CRC: CryptoError (GCM tag)', async () => {
    const { exp, image } = imageSnapshot('encrypt');
    const c = exp.files[image]!.chunks![0]!;
    copy = await copyDatastore();
    const p = chunkFile(copy.root, c.digest);
    const raw = await readFile(p);
    raw[raw.length - 1]! ^= 0x01;
    raw.writeUInt32LE(crc32(raw.subarray(44)), 8);
    await writeFile(p, raw);
    const { readAt } = await (await openCopy(exp, key)).openIndex(image);
    const e = await caught(readAt.readAt(c.start, 100));
    expect(e).toBeInstanceOf(CryptoError);
    expect(e.message).toContain(image);
    expect(e.message).toContain(c.digest);
  });

  it('chunk swapped for another valid chunk: IntegrityError (digest)', async () => {
    const { exp, image } = imageSnapshot('none');
    const [a, b] = exp.files[image]!.chunks!;
    copy = await copyDatastore();
    await copyFile(chunkFile(copy.root, b!.digest), chunkFile(copy.root, a!.digest));
    const { readAt } = await (await openCopy(exp)).openIndex(image);
    const e = await caught(readAt.readAt(0, readAt.size));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toMatch(/digest mismatch/);
    expect(e.message).toContain(a!.digest);
  });

  it('unencrypted chunk inside an encrypted index: IntegrityError (crypt mode)', async () => {
    const { exp, image } = imageSnapshot('encrypt');
    const c = exp.files[image]!.chunks!.at(-1)!;
    copy = await copyDatastore();
    const p = chunkFile(copy.root, c.digest);
    const plain = decodeBlob(await readFile(p), { name: 'x', crypt: key });
    await writeFile(p, encodeBlob(plain, { compress: true }));
    const { readAt } = await (await openCopy(exp, key)).openIndex(image);
    const e = await caught(readAt.readAt(c.start, 10));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toMatch(/crypt mode/);
    expect(e.message).toContain(image);
    // Without the key, verify still catches it (crypt mode check needs no key).
    const snap = await openCopy(exp);
    const report = await verifySnapshot(snap.repository, snap.ns, snap.ref, {});
    expect(report.ok).toBe(false);
  });
});

describe('damaged indexes and blobs', () => {
  it('truncated index: FormatError naming the file', async () => {
    const { exp, image } = imageSnapshot('none');
    copy = await copyDatastore();
    const p = join(copy.root, exp.path, image);
    await truncate(p, (await readFile(p)).length - 7);
    const e = await caught((await openCopy(exp)).openIndex(image));
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toContain(`${exp.path}/${image}`);
  });

  it('index changed after the manifest was written: IntegrityError with both csums', async () => {
    const { exp, image } = imageSnapshot('sign-only');
    copy = await copyDatastore();
    const p = join(copy.root, exp.path, image);
    const raw = await readFile(p);
    raw[4096 + 5]! ^= 0xff;
    await writeFile(p, raw);
    const e = await caught((await openCopy(exp, key)).openIndex(image));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toContain(`${exp.path}/${image}`);
    expect(e.message).toContain(exp.files[image]!.index_csum!);
  });

  it('blob changed: IntegrityError (SHA-256 against the manifest)', async () => {
    const { exp } = imageSnapshot('none');
    const name = blobName(exp);
    copy = await copyDatastore();
    const p = join(copy.root, exp.path, name);
    const raw = await readFile(p);
    raw[raw.length - 1]! ^= 1;
    await writeFile(p, raw);
    const e = await caught((await openCopy(exp)).readBlob(name));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toContain(`${exp.path}/${name}`);
  });
});

describe('manifests and keys', () => {
  async function rewriteManifest(exp: ExpectedSnapshot, edit: (text: string) => string): Promise<void> {
    copy ??= await copyDatastore();
    const p = join(copy.root, exp.path, 'index.json.blob');
    const text = decodeBlob(await readFile(p), { name: p }).toString('utf8');
    await writeFile(p, encodeBlob(Buffer.from(edit(text)), { compress: true }));
  }

  it('tampered signed manifest: IntegrityError before any chunk is read', async () => {
    const { exp, image } = imageSnapshot('sign-only');
    await rewriteManifest(exp, (t) => {
      const m = parseManifest(t, 'm');
      m.files.find((f) => f.filename === image)!.size += 1;
      return serializeManifest(m);
    });
    const e = await caught(openCopy(exp, key));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toMatch(/signature/);
    expect(e.message).toContain(`${exp.path}/index.json.blob`);
  });

  it('tampered signature value: IntegrityError', async () => {
    const { exp } = imageSnapshot('encrypt');
    await rewriteManifest(exp, (t) => t.replace(/"signature": "(.)/, (_m, c: string) => `"signature": "${c === '0' ? '1' : '0'}`));
    expect(await caught(openCopy(exp, key))).toBeInstanceOf(IntegrityError);
  });

  it('manifest of another snapshot: IntegrityError naming both snapshots', async () => {
    const { exp: a } = imageSnapshot('none');
    const { exp: b } = imageSnapshot('sign-only');
    copy = await copyDatastore();
    await copyFile(join(copy.root, a.path, 'index.json.blob'), join(copy.root, b.path, 'index.json.blob'));
    const e = await caught(openCopy(b, key));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toContain(a.path);
    expect(e.message).toContain(b.path);
  });

  it('wrong key: CryptoError with both short fingerprints, at open', async () => {
    const { exp } = imageSnapshot('encrypt');
    const e = await caught(openCopy(exp, other));
    expect(e).toBeInstanceOf(CryptoError);
    expect(e.message).toContain(formatFingerprint(key.fingerprint, 'short'));
    expect(e.message).toContain(formatFingerprint(other.fingerprint, 'short'));
  });

  it('no key: encrypted index and blob refuse with the fingerprint; plain blobs still read', async () => {
    const { exp, image } = imageSnapshot('encrypt');
    const snap = await openCopy(exp);
    const fp = formatFingerprint(key.fingerprint, 'short');
    for (const p of [snap.openIndex(image), snap.readBlob(blobName(exp))]) {
      const e = await caught(p);
      expect(e).toBeInstanceOf(CryptoError);
      expect(e.message).toContain(fp);
      expect(e.message).toContain('give --keyfile');
    }
    // rsa-encrypted.key.blob is listed as encrypt but is a plain blob: readable without a key.
    const withRsa = expectedSnapshots().find((s) => s.files['rsa-encrypted.key.blob'])!;
    const rsaSnap = await openCopy(withRsa);
    const rsa = await rsaSnap.readBlob('rsa-encrypted.key.blob');
    expect(rsa.toString('hex')).toBe((withRsa.files['rsa-encrypted.key.blob'] as { rsa_ciphertext_hex: string }).rsa_ciphertext_hex);
  });
});
