/** Key file JSON: parseKeyConfig, then decryptKeyConfig when the KDF is cheap (kdf none above all). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { decryptKeyConfig, parseKeyConfig, serializeKeyConfig, type Kdf } from '../../../src/crypto/key-config.js';
import type { FuzzTarget } from '../framework.js';
import { VECTOR_PASSPHRASE, keysDir } from '../paths.js';
import { check } from './common.js';

const FILES = ['key-none.json', 'other-key-none.json', 'key-scrypt.json', 'key-pbkdf2.json'];

/** Decrypting is only fuzzed when it costs little: a hostile n or iter is a slow input, not a bug. */
function cheap(kdf: Kdf): boolean {
  if (kdf === null) return true;
  if ('Scrypt' in kdf) return kdf.Scrypt.n * kdf.Scrypt.r * kdf.Scrypt.p <= 4096;
  return kdf.PBKDF2.iter <= 2000;
}

const b64 = fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString('base64'));
const str = fc.oneof(b64, fc.string({ maxLength: 40 }), fc.constantFrom('', '=', 'AAAA====', '2024-06-01T10:00:00+02:00', '1970-01-01T00:00:00Z'));
const small = fc.oneof(fc.integer({ min: -2, max: 64 }), fc.constantFrom(0, 1, 2 ** 31, 2 ** 53, -1, 1.5, Number.MAX_SAFE_INTEGER));
const kdfArb = fc.oneof(
  fc.constant(null),
  fc.record({ Scrypt: fc.record({ n: small, r: small, p: small, salt: str }) }),
  fc.record({ PBKDF2: fc.record({ iter: small, salt: str }) }),
  fc.jsonValue(),
);
const keyJson = fc.record(
  {
    kdf: kdfArb,
    created: fc.oneof(str, fc.jsonValue()),
    modified: fc.oneof(str, fc.jsonValue()),
    data: fc.oneof(b64, fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64')), fc.jsonValue()),
    fingerprint: fc.oneof(str, fc.jsonValue()),
    hint: fc.oneof(str, fc.jsonValue()),
  },
  { requiredKeys: [] },
);

export const keyFileTarget: FuzzTarget = {
  name: 'key-file',
  description: 'key file JSON (parseKeyConfig + decryptKeyConfig)',
  async prepare() {
    const seeds = FILES.map((f) => ({ name: `keys/${f}`, data: readFileSync(join(keysDir, f)) }));
    return {
      seeds,
      maxInputBytes: 1024 * 1024,
      structured: fc.oneof(
        keyJson.map((o) => Buffer.from(JSON.stringify(o))),
        fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
      ),
      async decode(input) {
        const file = 'fuzz/key.json';
        const kc = parseKeyConfig(input.toString('utf8'), file);
        const again = parseKeyConfig(serializeKeyConfig(kc), file);
        check(again.data === kc.data && JSON.stringify(again.kdf) === JSON.stringify(kc.kdf), 'key config does not survive a round trip');
        if (!cheap(kc.kdf)) return;
        const { key } = await decryptKeyConfig(kc, async () => VECTOR_PASSPHRASE, file);
        check(key.length === 32, `decrypted key has ${key.length} bytes`);
      },
    };
  },
};
