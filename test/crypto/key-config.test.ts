import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import {
  createKeyConfig,
  decryptKeyConfig,
  kdfName,
  loadKeyFile,
  parseKeyConfig,
  serializeKeyConfig,
  serializeKeyConfigPretty,
} from '../../src/crypto/key-config.js';
import { formatFingerprint } from '../../src/crypto/crypt-config.js';
import { CryptoError, FormatError, IntegrityError, LimitError, NotFoundError, UsageError } from '../../src/errors.js';
import { keysDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';
import { parseRfc3339, formatRfc3339Local } from '../../src/util/rfc3339.js';

const expected = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8'));
const pass = (p: string) => async (): Promise<string> => p;
const neverAsked = async (): Promise<string> => {
  throw new Error('passphrase must not be requested for a key without KDF');
};

describe('vector key files', () => {
  for (const f of ['key-scrypt.json', 'key-pbkdf2.json', 'key-none.json']) {
    it(`${f} loads to the raw key and fingerprint`, async () => {
      const r = await loadKeyFile(join(keysDir, f), f === 'key-none.json' ? neverAsked : pass(VECTOR_PASSPHRASE));
      expect(r.crypt.encKey.toString('hex')).toBe(expected.raw_key_hex);
      expect(formatFingerprint(r.crypt.fingerprint)).toBe(expected.fingerprint_full);
      expect(r.created).toBe(r.keyConfig.created);
    });
  }

  it('other-key-none.json loads to the other key', async () => {
    const r = await loadKeyFile(join(keysDir, 'other-key-none.json'), neverAsked);
    expect(r.crypt.encKey.toString('hex')).toBe(expected.other_key_raw_hex);
    expect(formatFingerprint(r.crypt.fingerprint)).toBe(expected.other_key_fingerprint_full);
  });

  it('re-serialises byte for byte (compact JSON, upstream field order)', () => {
    for (const f of ['key-scrypt.json', 'key-pbkdf2.json', 'key-none.json', 'other-key-none.json']) {
      const text = readFileSync(join(keysDir, f), 'utf8');
      expect(serializeKeyConfig(parseKeyConfig(text, f))).toBe(text.trim());
    }
  });

  it('kdf names', () => {
    const k = (f: string) => parseKeyConfig(readFileSync(join(keysDir, f), 'utf8'), f);
    expect(kdfName(k('key-scrypt.json'))).toBe('scrypt');
    expect(kdfName(k('key-pbkdf2.json'))).toBe('pbkdf2');
    expect(kdfName(k('key-none.json'))).toBe('none');
  });

  it('wrong passphrase -> CryptoError naming the file (and the hint when there is one)', async () => {
    const file = join(keysDir, 'key-scrypt.json');
    await expect(loadKeyFile(file, pass('wrong passphrase'))).rejects.toThrow(CryptoError);
    await expect(loadKeyFile(file, pass('wrong passphrase'))).rejects.toThrow(file);
    const kc = parseKeyConfig(readFileSync(join(keysDir, 'key-pbkdf2.json'), 'utf8'), 'k.json');
    kc.hint = 'the usual one';
    await expect(decryptKeyConfig(kc, pass('wrong passphrase'), 'k.json')).rejects.toThrow(/k\.json.*the usual one/);
  });

  it('too short passphrase -> CryptoError', async () => {
    await expect(loadKeyFile(join(keysDir, 'key-pbkdf2.json'), pass('abcd'))).rejects.toThrow(/too short/);
  });

  it('missing file -> NotFoundError naming it', async () => {
    await expect(loadKeyFile(join(keysDir, 'no-such-key.json'), neverAsked)).rejects.toThrow(NotFoundError);
  });
});

describe('spec 4.9 worked key-file examples', () => {
  const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  const created = '2020-06-26T13:56:05+00:00';
  const salt = Buffer.alloc(32, 0xaa);
  const iv = Buffer.alloc(16, 0xbb);
  const examples = {
    none: '{"kdf":null,"created":"2020-06-26T13:56:05+00:00","modified":"2020-06-26T13:56:05+00:00","data":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","fingerprint":"0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b"}',
    scrypt:
      '{"kdf":{"Scrypt":{"n":65536,"r":8,"p":1,"salt":"qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqo="}},"created":"2020-06-26T13:56:05+00:00","modified":"2020-06-26T13:56:05+00:00","data":"u7u7u7u7u7u7u7u7u7u7u6l/iZt+rtS9LQxTO9JfodYJgrftQ6LOdP6HqF+5sUXPSwaN2P3SM9t7dCTydR1b6g==","fingerprint":"0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b"}',
    pbkdf2:
      '{"kdf":{"PBKDF2":{"iter":65535,"salt":"qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqo="}},"created":"2020-06-26T13:56:05+00:00","modified":"2020-06-26T13:56:05+00:00","data":"u7u7u7u7u7u7u7u7u7u7u92nAmytWQW1sw/TUG9pu1OsDLsCf2itkLNUKVAtbq9+i8f4KMZhsc79EXj9yB/BGg==","fingerprint":"0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b"}',
  } as const;
  for (const kdf of ['none', 'scrypt', 'pbkdf2'] as const) {
    it(`${kdf}: create reproduces the example and the example decrypts`, async () => {
      const kc = await createKeyConfig(key, {
        kdf,
        created,
        modified: created,
        ...(kdf !== 'none' ? { passphrase: 'password', salt, iv } : {}),
      });
      expect(serializeKeyConfig(kc)).toBe(examples[kdf]);
      const r = await decryptKeyConfig(parseKeyConfig(examples[kdf], 'ex.json'), pass('password'), 'ex.json');
      expect(r.key.equals(key)).toBe(true);
      expect(r.created).toBe(created);
    });
  }
});

describe('created keys', () => {
  for (const kdf of ['none', 'scrypt', 'pbkdf2'] as const) {
    it(`${kdf}: fresh key round-trips through a file and loadKeyFile`, async () => {
      await withDir(
        async ({ path }) => {
          const key = Buffer.from(expected.raw_key_hex, 'hex');
          const kc = await createKeyConfig(key, { kdf, ...(kdf !== 'none' ? { passphrase: 'secret phrase' } : {}) });
          expect(kc.created).toBe(kc.modified);
          expect(kc.created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/);
          expect(kc.fingerprint).toBe(expected.fingerprint_full);
          const file = join(path, 'k.json');
          await writeFile(file, serializeKeyConfig(kc));
          const r = await loadKeyFile(file, kdf === 'none' ? neverAsked : pass('secret phrase'));
          expect(r.crypt.encKey.equals(key)).toBe(true);
        },
        { unsafeCleanup: true },
      );
    });
  }

  it('refuses a hint without a KDF, a missing or short passphrase', async () => {
    const key = Buffer.alloc(32, 7);
    await expect(createKeyConfig(key, { kdf: 'none', hint: 'h' })).rejects.toThrow(UsageError);
    await expect(createKeyConfig(key, { kdf: 'scrypt' })).rejects.toThrow(UsageError);
    await expect(createKeyConfig(key, { kdf: 'pbkdf2', passphrase: 'abcd' })).rejects.toThrow(UsageError);
  });

  it('pretty serialisation has 2-space indent and upstream order', () => {
    const kc = parseKeyConfig(readFileSync(join(keysDir, 'key-scrypt.json'), 'utf8'), 'k');
    const lines = serializeKeyConfigPretty(kc).split('\n');
    expect(lines[0]).toBe('{');
    expect(lines[1]).toBe('  "kdf": {');
    expect(lines[2]).toBe('    "Scrypt": {');
    expect(lines[3]).toBe('      "n": 65536,');
  });
});

describe('hostile key files', () => {
  const good = JSON.parse(readFileSync(join(keysDir, 'key-none.json'), 'utf8'));
  const cases: [string, string, typeof FormatError | typeof IntegrityError | typeof LimitError][] = [
    ['not JSON', '{"kdf":null,', FormatError],
    ['an array', '[1,2]', FormatError],
    ['missing data', JSON.stringify({ ...good, data: undefined }), FormatError],
    ['data not base64', JSON.stringify({ ...good, data: '!!!!' }), FormatError],
    ['short key', JSON.stringify({ ...good, data: 'AAECAw==' }), FormatError],
    ['bad created', JSON.stringify({ ...good, created: 'yesterday' }), FormatError],
    ['unknown kdf', JSON.stringify({ ...good, kdf: { Argon2: {} } }), FormatError],
    ['scrypt with a string n', JSON.stringify({ ...good, kdf: { Scrypt: { n: '1', r: 8, p: 1, salt: '' } } }), FormatError],
    ['wrong fingerprint', JSON.stringify({ ...good, fingerprint: expected.other_key_fingerprint_full }), IntegrityError],
    ['garbage fingerprint', JSON.stringify({ ...good, fingerprint: 'xyz' }), IntegrityError],
    ['scrypt memory bomb', JSON.stringify({ ...good, kdf: { Scrypt: { n: 2 ** 30, r: 8, p: 1, salt: 'AAAA' } } }), LimitError],
    ['pbkdf2 iteration bomb', JSON.stringify({ ...good, kdf: { PBKDF2: { iter: 2 ** 40, salt: 'AAAA' } } }), LimitError],
  ];
  for (const [what, text, cls] of cases) {
    it(`${what} -> ${cls.name} naming the file`, async () => {
      await withDir(
        async ({ path }) => {
          const file = join(path, 'bad-key.json');
          await writeFile(file, text);
          const err = await loadKeyFile(file, pass('long enough passphrase')).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(err).toBeInstanceOf(cls);
          expect((err as Error).message).toContain(file);
        },
        { unsafeCleanup: true },
      );
    });
  }

  it('a missing fingerprint is accepted (older key files)', async () => {
    const kc = parseKeyConfig(JSON.stringify({ ...good, fingerprint: undefined }), 'k');
    const r = await decryptKeyConfig(kc, neverAsked, 'k');
    expect(formatFingerprint(r.fingerprint)).toBe(expected.fingerprint_full);
  });

  it('damaged protected data -> CryptoError', async () => {
    await withDir(
      async ({ path }) => {
        const file = join(path, 'k.json');
        await copyFile(join(keysDir, 'key-pbkdf2.json'), file);
        const j = JSON.parse(readFileSync(file, 'utf8'));
        const d = Buffer.from(j.data, 'base64');
        d[40]! ^= 1;
        j.data = d.toString('base64').replace(/=+$/, ''); // unpadded base64 is accepted
        await writeFile(file, JSON.stringify(j));
        await expect(loadKeyFile(file, pass(VECTOR_PASSPHRASE))).rejects.toThrow(CryptoError);
      },
      { unsafeCleanup: true },
    );
  });
});

describe('rfc3339', () => {
  it('parses Z and offsets; local formatting round-trips', () => {
    expect(parseRfc3339('2020-06-26T13:56:05Z')).toBe(1593179765);
    expect(parseRfc3339('2020-06-26T15:56:05+02:00')).toBe(1593179765);
    expect(parseRfc3339('2020-06-26T11:56:05-02:00')).toBe(1593179765);
    expect(parseRfc3339(formatRfc3339Local(1593179765))).toBe(1593179765);
    expect(() => parseRfc3339('2020-13-26T13:56:05Z')).toThrow(FormatError);
    expect(() => parseRfc3339('2020-06-26T13:56:05.123Z')).toThrow(FormatError);
  });
});
