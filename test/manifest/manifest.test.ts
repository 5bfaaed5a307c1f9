import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeBlob } from '../../src/blob/data-blob.js';
import { CryptConfig, formatFingerprint } from '../../src/crypto/crypt-config.js';
import { CryptoError, FormatError, IntegrityError } from '../../src/errors.js';
import { canonicalJson, prettyJson } from '../../src/manifest/json-text.js';
import {
  checkManifestKey,
  computeManifestSignature,
  decodeManifestBlob,
  manifestToJson,
  parseManifest,
  serializeManifest,
  signManifest,
  signedManifestText,
  type Manifest,
} from '../../src/manifest/manifest.js';
import { datastoreDir } from '../helpers/paths.js';
import { datastoreVectorsDir, expectedSnapshots, loadOtherKey, loadVectorKey } from '../helpers/datastore-expected.js';

let key: CryptConfig;
let other: CryptConfig;
beforeAll(async () => {
  key = await loadVectorKey();
  other = await loadOtherKey();
});

describe('spec 8.5 signature vector', () => {
  // Key = scrypt("test", "", N=65536, r=8, p=1) as given in the spec (Derived value).
  const crypt = CryptConfig.fromKey(Buffer.from('28cdb1a3bef39396c3860e00d448fe7a0efd8244486ab6feb30457681d31597e', 'hex'));
  const m: Manifest = {
    backupType: 'host',
    backupId: 'elsa',
    backupTime: 1593179765,
    files: [
      { filename: 'test1.img.fidx', size: 200, csum: '01'.repeat(32), cryptMode: 'encrypt' },
      { filename: 'abc.blob', size: 200, csum: '02'.repeat(32), cryptMode: 'none' },
    ],
    signature: null,
    unprotected: { note: 'This is not protected by the signature.' },
  };

  it('canonical text and HMAC match upstream', () => {
    const canon =
      '{"backup-id":"elsa","backup-time":1593179765,"backup-type":"host","files":[{"crypt-mode":"encrypt","csum":"0101010101010101010101010101010101010101010101010101010101010101","filename":"test1.img.fidx","size":200},{"crypt-mode":"none","csum":"0202020202020202020202020202020202020202020202020202020202020202","filename":"abc.blob","size":200}]}';
    const signed = signManifest(m, crypt);
    expect(signedManifestText(manifestToJson(m))).toBe(canon);
    expect(computeManifestSignature(m, crypt)).toBe('d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9');
    expect(signed.signature).toBe('d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9');
    expect(signed.unprotected['key-fingerprint']).toBe(formatFingerprint(crypt.fingerprint));
    expect(signed.unprotected['note']).toBe(m.unprotected['note']);
    // The canonical text of the signed part, computed from the serialized-and-reparsed manifest.
    const reparsed = parseManifest(serializeManifest(signed), 'x');
    expect(signedManifestText(reparsed.parsed!)).toBe(canon);
    expect(checkManifestKey(reparsed, crypt, 'x').signatureVerified).toBe(true);
  });

  it('changing unprotected data keeps the signature valid; changing a signed field breaks it', () => {
    const signed = signManifest(m, crypt);
    const text = serializeManifest({ ...signed, unprotected: { ...signed.unprotected, note: 'changed' } });
    expect(checkManifestKey(parseManifest(text, 'x'), crypt, 'x').signatureVerified).toBe(true);
    const tampered = serializeManifest(signed).replace('"size": 200', '"size": 201');
    expect(() => checkManifestKey(parseManifest(tampered, 'x'), crypt, 'x')).toThrow(IntegrityError);
  });
});

describe('every manifest of the vector datastore', () => {
  for (const s of expectedSnapshots()) {
    it(`${s.path}: re-serializes byte-identically; blob decodes to the same text; signature checks`, () => {
      const copy = s.files['index.json.blob']!.manifest_plain_copy!;
      const text = readFileSync(join(datastoreVectorsDir, copy), 'utf8');
      const m = parseManifest(text, copy);
      expect(serializeManifest(m)).toBe(text);
      // The store's blob holds the same manifest.
      const blob = readFileSync(join(datastoreDir, s.path, 'index.json.blob'));
      expect(serializeManifest(decodeManifestBlob(blob, s.path))).toBe(text);
      const check = checkManifestKey(m, key, copy);
      expect(check.signatureVerified).toBe(s.crypt_mode !== 'none');
      if (s.crypt_mode !== 'none') {
        expect(check.keyFingerprint?.equals(key.fingerprint)).toBe(true);
        // Re-signing the parsed manifest reproduces the stored signature.
        expect(signManifest(m, key).signature).toBe(m.signature);
        // Another key fails fast, naming both short fingerprints.
        let err: unknown;
        try {
          checkManifestKey(m, other, copy);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(CryptoError);
        expect((err as Error).message).toContain(formatFingerprint(key.fingerprint, 'short'));
        expect((err as Error).message).toContain(formatFingerprint(other.fingerprint, 'short'));
        expect((err as Error).message).toContain(copy);
      } else {
        // Key given, manifest unsigned: accepted.
        expect(checkManifestKey(m, other, copy).signatureVerified).toBe(false);
      }
      expect(checkManifestKey(m, undefined, copy).signatureVerified).toBe(false);
    });
  }
});

describe('canonical and pretty JSON', () => {
  it('sorts keys by UTF-8 bytes, not UTF-16 units or integer-first order', () => {
    const v = { b: 1, '\u{1F600}': 2, '\uFFFF': 3, '10': 4, '9': 5, a: [true, 'x\n"'] };
    expect(canonicalJson(v)).toBe('{"10":4,"9":5,"a":[true,"x\\n\\""],"b":1,"\uFFFF":3,"\u{1F600}":2}');
    expect(prettyJson({ z: {}, y: [], x: { '2': null } })).toBe('{\n  "x": {\n    "2": null\n  },\n  "y": [],\n  "z": {}\n}');
  });

  it('refuses null in the signed part', () => {
    expect(() => canonicalJson({ a: [1, null] })).toThrow(FormatError);
  });
});

describe('hostile manifests', () => {
  const good = (): Record<string, unknown> => ({
    'backup-type': 'vm',
    'backup-id': '100',
    'backup-time': 1717236000,
    files: [{ 'crypt-mode': 'none', csum: 'ab'.repeat(32), filename: 'drive-scsi0.img.fidx', size: 10 }],
    signature: null,
    unprotected: {},
  });
  const withFile = (patch: Record<string, unknown>): Record<string, unknown> => {
    const g = good();
    (g.files as Record<string, unknown>[])[0] = { ...(g.files as Record<string, unknown>[])[0], ...patch };
    return g;
  };
  const cases: [string, unknown][] = [
    ['not an object', [1, 2]],
    ['bad type', { ...good(), 'backup-type': 'vmx' }],
    ['bad id', { ...good(), 'backup-id': '../etc' }],
    ['fractional time', { ...good(), 'backup-time': 1.5 }],
    ['time as string', { ...good(), 'backup-time': '1717236000' }],
    ['no files', { ...good(), files: undefined }],
    ['path traversal filename', withFile({ filename: '../../etc/passwd.blob' })],
    ['slash in filename', withFile({ filename: 'a/b.fidx' })],
    ['unknown extension', withFile({ filename: 'evil.sh' })],
    ['dot filename', withFile({ filename: '.hidden.blob' })],
    ['negative size', withFile({ size: -1 })],
    ['huge size', withFile({ size: 2 ** 60 })],
    ['size as string', withFile({ size: '10' })],
    ['short csum', withFile({ csum: 'abcd' })],
    ['bad crypt-mode', withFile({ 'crypt-mode': 'rot13' })],
    ['bad signature', { ...good(), signature: 'zz' }],
    ['unprotected not an object', { ...good(), unprotected: [] }],
    ['bad key-fingerprint', { ...good(), unprotected: { 'key-fingerprint': 'nope' } }],
    ['duplicate file', { ...good(), files: [...(good().files as unknown[]), ...(good().files as unknown[])] }],
  ];
  for (const [what, v] of cases) {
    it(`${what}: FormatError naming the file`, () => {
      expect(() => parseManifest(JSON.stringify(v), 'snap/index.json.blob')).toThrow(FormatError);
      try {
        parseManifest(JSON.stringify(v), 'snap/index.json.blob');
      } catch (e) {
        expect((e as Error).message).toContain('snap/index.json.blob');
      }
    });
  }

  it('invalid JSON and invalid UTF-8 are FormatErrors', () => {
    expect(() => parseManifest('{"backup-type": ', 'm')).toThrow(FormatError);
    const blob = encodeBlob(Buffer.from([0x7b, 0xff, 0x7d]), { compress: false });
    expect(() => decodeManifestBlob(blob, 'm')).toThrow(FormatError);
  });

  it('an encrypted manifest blob is refused', async () => {
    const blob = encodeBlob(Buffer.from(JSON.stringify(good())), { compress: false, crypt: key });
    expect(() => decodeManifestBlob(blob, 'm')).toThrow(IntegrityError);
  });

  it('a missing crypt-mode reads as none (pre-0.8 backups)', () => {
    const v = good();
    delete (v.files as Record<string, unknown>[])[0]!['crypt-mode'];
    expect(parseManifest(JSON.stringify(v), 'm').files[0]!.cryptMode).toBe('none');
  });

  it('unknown fields are kept and covered by the signature', () => {
    const v = { ...good(), 'extra-field': { z: 1 } };
    const m = parseManifest(JSON.stringify(v), 'm');
    const signed = signManifest(m, key);
    const text = serializeManifest(signed);
    expect(text).toContain('"extra-field"');
    expect(checkManifestKey(parseManifest(text, 'm'), key, 'm').signatureVerified).toBe(true);
    const tampered = text.replace('"z": 1', '"z": 2');
    expect(() => checkManifestKey(parseManifest(tampered, 'm'), key, 'm')).toThrow(IntegrityError);
  });
});
