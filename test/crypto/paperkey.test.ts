import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generatePaperKey, parsePaperKey, PAPERKEY_BEGIN, PAPERKEY_END } from '../../src/crypto/paperkey.js';
import { createKeyConfig, decryptKeyConfig, parseKeyConfig, serializeKeyConfig } from '../../src/crypto/key-config.js';
import { CryptoError, FormatError, IntegrityError } from '../../src/errors.js';
import { keysDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';
import { decodeQr, matrixFromBlockArt, matrixFromSvg } from '../helpers/qr-decode.js';

// Paper keys print timestamps in the local zone of the printing machine: print ours in the zone
// the vector key files were written in (their offset), as a fixed-offset POSIX TZ.
function tzForOffset(rfc3339: string): string {
  const m = /([+-])(\d\d):(\d\d)$/.exec(rfc3339);
  if (!m) return 'UTC';
  return `UTC${m[1] === '+' ? '-' : '+'}${m[2]}:${m[3]}`; // POSIX TZ signs are inverted
}
process.env.TZ = tzForOffset(JSON.parse(readFileSync(join(keysDir, 'key-none.json'), 'utf8')).created);

interface PaperKeyVector {
  file: string;
  format: 'txt' | 'html';
  source: string;
  subject: string | null;
}
const expected = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8'));
const vectors: PaperKeyVector[] = expected.paper_keys;
const read = (f: string): string => readFileSync(join(keysDir, f), 'utf8');
const isArt = (l: string): boolean => l.length > 0 && /^[\u2580\u2584\u2588 ]+$/.test(l);

/** Splits text paper key output into text lines and decoded QR payloads, in order. */
function analyseText(out: string): { text: string[]; qr: string[] } {
  const text: string[] = [];
  const qr: string[] = [];
  let art: string[] = [];
  const flush = (): void => {
    if (art.length > 0) qr.push(decodeQr(matrixFromBlockArt(art)).data.toString('utf8'));
    art = [];
  };
  for (const l of out.split('\n')) {
    if (isArt(l)) art.push(l);
    else {
      flush();
      text.push(l);
    }
  }
  flush();
  return { text, qr };
}

function analyseHtml(out: string): { text: string; qr: string[] } {
  const qr = [...out.matchAll(/src="data:image\/svg\+xml;base64,([^"]+)"/g)].map((m) =>
    decodeQr(matrixFromSvg(Buffer.from(m[1]!, 'base64').toString('utf8'))).data.toString('utf8'),
  );
  return { text: out.replace(/base64,[^"]+"/g, 'base64,…"'), qr };
}

describe('paper key output matches upstream', () => {
  for (const v of vectors) {
    it(`${v.file}`, () => {
      const ours = generatePaperKey(read(v.source), {
        file: v.source,
        format: v.format === 'txt' ? 'text' : 'html',
        ...(v.subject !== null ? { subject: v.subject } : {}),
      });
      const theirs = read(v.file);
      if (v.format === 'txt') {
        const a = analyseText(ours);
        const b = analyseText(theirs);
        expect(a.text).toEqual(b.text); // every non-QR line, including blank lines and form feeds
        expect(a.qr).toEqual(b.qr); // QR codes carry the same payloads
        expect(a.qr.length).toBeGreaterThan(0);
      } else {
        const a = analyseHtml(ours);
        const b = analyseHtml(theirs);
        expect(a.text).toBe(b.text);
        expect(a.qr).toEqual(b.qr);
        expect(a.qr.length).toBe(1);
      }
    });
  }

  it('the key QR payload is the pretty JSON between the markers', () => {
    const out = generatePaperKey(read('key-scrypt.json'), { file: 'k', format: 'text' });
    const lines = out.split('\n');
    const json = lines.slice(lines.indexOf(PAPERKEY_BEGIN) + 1, lines.indexOf(PAPERKEY_END)).join('\n');
    expect(analyseText(out).qr).toEqual([json]);
    expect(JSON.parse(json)).toEqual(JSON.parse(read('key-scrypt.json')));
  });

  it('master key HTML uses blocks of 20 zero-padded lines, one QR per block', () => {
    const pem = read('master-private.pem');
    const out = generatePaperKey(pem, { file: 'm', format: 'html', subject: 'a <b> & c' });
    const lines = pem.trimEnd().split('\n');
    const a = analyseHtml(out);
    expect(a.qr.length).toBe(Math.ceil(lines.length / 20));
    expect(a.qr[0]).toBe(lines.slice(0, 20).join('\n'));
    expect(out).toContain(`00: ${lines[0]}\n`);
    expect(out).toContain('<p>Subject: a &lt;b&gt; &amp; c</p>');
  });

  it('refuses content that is neither a key file nor a PEM private key', () => {
    expect(() => generatePaperKey('hello', { file: 'x.txt', format: 'text' })).toThrow(FormatError);
    expect(() => generatePaperKey('-----BEGIN ENCRYPTED PRIVATE KEY-----\nabc\n', { file: 'x.pem', format: 'text' })).toThrow(
      FormatError,
    );
  });
});

describe('import-paperkey', () => {
  for (const v of vectors) {
    it(`${v.file} imports back to ${v.source}`, () => {
      const r = parsePaperKey(read(v.file), v.file);
      if (r.kind === 'master-key') expect(r.pem).toBe(read(v.source));
      else expect(serializeKeyConfig(r.keyConfig)).toBe(read(v.source).trim());
    });
  }

  it('tolerates blank lines, CRLF, indentation, a subject line and no QR art (typed in by a person)', () => {
    const out = generatePaperKey(read('key-none.json'), { file: 'k', format: 'text', subject: 'office safe' });
    const typed =
      '\r\n\r\n' +
      out
        .split('\n')
        .filter((l) => !isArt(l))
        .map((l) => `   ${l}  `)
        .join('\r\n') +
      '\r\n\r\n';
    const r = parsePaperKey(typed, 'typed.txt');
    expect(r.kind).toBe('key-config');
    if (r.kind === 'key-config') expect(serializeKeyConfig(r.keyConfig)).toBe(read('key-none.json').trim());
    // the scanned QR payload alone (bare JSON) works too
    const qrText = analyseText(out).qr[0]!;
    const r2 = parsePaperKey(`\n${qrText}\n`, 'scan.txt');
    expect(r2.kind).toBe('key-config');
  });

  it('master key lines typed without QR art and with extra spaces', () => {
    const typed = read('paperkey-master-private.txt')
      .split('\n')
      .filter((l) => !isArt(l) && l !== '\f')
      .map((l) => l.replace(/^\s*(\d+): /, '$1 :  '))
      .join('\n');
    const r = parsePaperKey(typed, 'typed.txt');
    expect(r.kind === 'master-key' && r.pem).toBe(read('master-private.pem'));
  });

  for (const kdf of ['none', 'scrypt', 'pbkdf2'] as const) {
    it(`round trip for kdf ${kdf}: create -> paper key (text and html) -> import -> same key`, async () => {
      const key = Buffer.from(expected.raw_key_hex, 'hex');
      const kc = await createKeyConfig(key, { kdf, ...(kdf !== 'none' ? { passphrase: VECTOR_PASSPHRASE, hint: 'h' } : {}) });
      for (const format of ['text', 'html'] as const) {
        const paper = generatePaperKey(serializeKeyConfig(kc), { file: 'k', format });
        const r = parsePaperKey(paper, 'paper');
        if (r.kind !== 'key-config') throw new Error('expected a key config');
        expect(serializeKeyConfig(r.keyConfig)).toBe(serializeKeyConfig(kc));
        const d = await decryptKeyConfig(r.keyConfig, async () => VECTOR_PASSPHRASE, 'paper');
        expect(d.key.equals(key)).toBe(true);
      }
    });
  }

  it('damaged paper keys give clear errors', async () => {
    const out = generatePaperKey(read('key-none.json'), { file: 'k', format: 'text' });
    // a typo in the key data: detected by the fingerprint check
    const data = JSON.parse(read('key-none.json')).data as string;
    const typo = out.replace(data, (data[0] === 'A' ? 'B' : 'A') + data.slice(1));
    const kc = parsePaperKey(typo, 'typo.txt');
    if (kc.kind !== 'key-config') throw new Error('expected a key config');
    await expect(decryptKeyConfig(kc.keyConfig, async () => '', 'typo.txt')).rejects.toThrow(IntegrityError);
    // a typo in protected data: wrong passphrase style error
    const sout = generatePaperKey(read('key-scrypt.json'), { file: 'k', format: 'text' });
    const sdata = JSON.parse(read('key-scrypt.json')).data as string;
    const s = parsePaperKey(sout.replace(sdata, sdata.slice(0, 40) + (sdata[40] === 'A' ? 'B' : 'A') + sdata.slice(41)), 's.txt');
    if (s.kind !== 'key-config') throw new Error('expected a key config');
    await expect(decryptKeyConfig(s.keyConfig, async () => VECTOR_PASSPHRASE, 's.txt')).rejects.toThrow(CryptoError);
    // broken JSON, missing END marker, no key at all
    expect(() => parsePaperKey(out.replace('"kdf": null,', '"kdf": null'), 'bad.txt')).toThrow(FormatError);
    expect(() => parsePaperKey(out.replace(PAPERKEY_END, ''), 'bad.txt')).toThrow(/no "-----END/);
    expect(() => parsePaperKey('nothing here\n', 'empty.txt')).toThrow(FormatError);
    expect(() => parsePaperKey('nothing here\n', 'empty.txt')).toThrow('empty.txt');
    // master key: a missing line, and a mangled one
    const m = read('paperkey-master-private.txt');
    expect(() => parsePaperKey(m.replace(/^ 7: .*$/m, ''), 'm.txt')).toThrow(/line 7 is missing/);
    expect(() => parsePaperKey(m.replace(/^ 7: (.*)$/m, ' 7: $1!'), 'm.txt')).toThrow(/line 7/);
  });
});

describe('hostile paper key and key file text', () => {
  it('arbitrary text only ever gives a FormatError (or a key)', async () => {
    const { default: fc } = await import('fast-check');
    const pieces = fc.constantFrom(
      PAPERKEY_BEGIN,
      PAPERKEY_END,
      '{',
      '}',
      '"kdf": null,',
      ' 0: -----BEGIN ENCRYPTED PRIVATE KEY-----',
      '19: -----END ENCRYPTED PRIVATE KEY-----',
      '\n',
      '\u2588\u2580',
      '12: abc',
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(pieces, fc.string({ maxLength: 20 })), { maxLength: 30 }), (parts) => {
        const text = parts.join('\n');
        try {
          parsePaperKey(text, 'fuzz.txt');
        } catch (e) {
          expect(e).toBeInstanceOf(FormatError);
          expect((e as Error).message).toContain('fuzz.txt');
        }
        try {
          parseKeyConfig(text, 'fuzz.json');
        } catch (e) {
          expect(e).toBeInstanceOf(FormatError);
          expect((e as Error).message).toContain('fuzz.json');
        }
      }),
      { numRuns: 500 },
    );
  });
});
