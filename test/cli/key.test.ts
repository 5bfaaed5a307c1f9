import { describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { cliPath, datastoreDir, keysDir, vectorsDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { decodeBlob, encodeBlob } from '../../src/blob/data-blob.js';
import { formatFingerprint } from '../../src/crypto/crypt-config.js';

const keysExpected = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8'));
const dsExpected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8'));
const rsaSnap = (dsExpected.snapshots as { path: string; files: Record<string, unknown> }[]).find(
  (s) => s.files['rsa-encrypted.key.blob'] !== undefined,
)!;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string>, stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [cliPath, ...args],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: 'UTC', ...env }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (stdin !== undefined) child.stdin?.end(stdin);
    else child.stdin?.end();
  });
}

// The zone the vector key files were written in, for commands that print local times.
const vectorTz = ((): string => {
  const created = JSON.parse(readFileSync(join(keysDir, 'key-none.json'), 'utf8')).created as string;
  const m = /([+-])(\d\d):(\d\d)$/.exec(created);
  return m ? `UTC${m[1] === '+' ? '-' : '+'}${m[2]}:${m[3]}` : 'UTC';
})();

const tmp = <T>(fn: (dir: string) => Promise<T>): Promise<T> => withDir(({ path }) => fn(path), { unsafeCleanup: true });

describe('pbsfs key create / show / change-passphrase', () => {
  for (const kdf of ['scrypt', 'pbkdf2', 'none'] as const) {
    it(`create --kdf ${kdf}: 0600, loads like the upstream keys, encrypts and decrypts blobs`, () =>
      tmp(async (dir) => {
        const file = join(dir, 'key.json');
        const env = { HOME: dir, PBS_ENCRYPTION_PASSWORD: 'a fine passphrase' };
        const r = await run(['key', 'create', file, '--kdf', kdf], env);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(statSync(file).mode & 0o777).toBe(0o600);
        const loaded = await loadKeyFile(file, async () => 'a fine passphrase');
        expect(r.stdout).toContain(formatFingerprint(loaded.crypt.fingerprint));
        const data = Buffer.from('some chunk data '.repeat(1000));
        const blob = encodeBlob(data, { crypt: loaded.crypt, compress: true });
        const out = decodeBlob(blob, { name: 'c', crypt: loaded.crypt, expectedDigest: loaded.crypt.computeDigest(data) });
        expect(out.equals(data)).toBe(true);
        const show = await run(['--output-format', 'json', 'key', 'show', file], env);
        expect(show.code).toBe(0);
        const info = JSON.parse(show.stdout);
        expect(info.kdf).toBe(kdf);
        expect(typeof info.created).toBe('number');
        expect(info.created).toBe(info.modified);
        expect(info.fingerprint).toBe(formatFingerprint(loaded.crypt.fingerprint));
        expect(info.path).toBe(JSON.stringify(file));
      }));
  }

  it('refuses to overwrite, refuses --hint with --kdf none, and needs a passphrase source', () =>
    tmp(async (dir) => {
      const file = join(dir, 'key.json');
      await writeFile(file, 'precious');
      const env = { HOME: dir, PBS_ENCRYPTION_PASSWORD: 'a fine passphrase' };
      const r = await run(['key', 'create', file], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(file);
      expect(r.stderr).toContain('refusing to overwrite');
      expect(readFileSync(file, 'utf8')).toBe('precious');
      const h = await run(['key', 'create', join(dir, 'k2.json'), '--kdf', 'none', '--hint', 'x'], env);
      expect(h.code).toBe(2);
      const np = await run(['key', 'create', join(dir, 'k3.json')], { HOME: dir });
      expect(np.code).toBe(2);
      expect(np.stderr).toMatch(/no passphrase source/);
      const short = await run(['key', 'create', join(dir, 'k4.json')], { HOME: dir, PBS_ENCRYPTION_PASSWORD: 'abc' });
      expect(short.code).toBe(2);
      expect(short.stderr).toMatch(/too short/);
    }));

  it('without a file argument uses $XDG_CONFIG_HOME/proxmox-backup/encryption-key.json', () =>
    tmp(async (dir) => {
      const env = { HOME: dir, XDG_CONFIG_HOME: join(dir, 'cfg'), PBS_ENCRYPTION_PASSWORD: 'a fine passphrase' };
      const r = await run(['key', 'create', '--kdf', 'none'], env);
      expect(r.code).toBe(0);
      const s = await run(['key', 'show'], env);
      expect(s.code).toBe(0);
      expect(s.stdout).toContain(join(dir, 'cfg', 'proxmox-backup', 'encryption-key.json'));
      expect(s.stdout).toMatch(/kdf:\s+none/);
    }));

  it('change-passphrase keeps key and created, swaps passphrase and kdf, and a wrong old passphrase changes nothing', () =>
    tmp(async (dir) => {
      const file = join(dir, 'key.json');
      const env = { HOME: dir, PBS_ENCRYPTION_PASSWORD: 'old passphrase' };
      expect((await run(['key', 'create', file], env)).code).toBe(0);
      const before = await loadKeyFile(file, async () => 'old passphrase');
      const bytes = await readFile(file);
      const wrong = await run(['key', 'change-passphrase', file], {
        HOME: dir,
        PBS_ENCRYPTION_PASSWORD: 'not the old one',
        PBS_NEW_ENCRYPTION_PASSWORD: 'new passphrase',
      });
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toContain(file);
      expect((await readFile(file)).equals(bytes)).toBe(true);
      const ok = await run(['key', 'change-passphrase', file, '--kdf', 'pbkdf2', '--hint', 'new one'], {
        ...env,
        PBS_NEW_ENCRYPTION_PASSWORD: 'new passphrase',
      });
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const after = await loadKeyFile(file, async () => 'new passphrase');
      expect(after.crypt.encKey.equals(before.crypt.encKey)).toBe(true);
      expect(after.keyConfig.created).toBe(before.keyConfig.created);
      expect(after.keyConfig.hint).toBe('new one');
      await expect(loadKeyFile(file, async () => 'old passphrase')).rejects.toThrow(/new one/);
      const none = await run(['key', 'change-passphrase', file, '--kdf', 'none'], { HOME: dir, PBS_ENCRYPTION_PASSWORD: 'new passphrase' });
      expect(none.code).toBe(0);
      expect(JSON.parse(readFileSync(file, 'utf8')).kdf).toBeNull();
    }));

  it('every upstream vector key shows its kdf and fingerprint', async () => {
    for (const [f, kdf] of [['key-scrypt.json', 'scrypt'], ['key-pbkdf2.json', 'pbkdf2'], ['key-none.json', 'none']]) {
      const r = await run(['--output-format', 'json', 'key', 'show', join(keysDir, f!)], {});
      expect(r.code).toBe(0);
      const info = JSON.parse(r.stdout);
      expect(info.kdf).toBe(kdf);
      expect(info.fingerprint).toBe(keysExpected.fingerprint_full);
    }
    const bad = await run(['key', 'show', join(vectorsDir, 'README.md')], {});
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('README.md');
  });
});

describe('pbsfs key paperkey / import-paperkey', () => {
  it('text paper key of a vector key matches upstream up to the QR art; html is the default', async () => {
    const t = await run(['key', 'paperkey', join(keysDir, 'key-none.json'), '--output-format', 'text'], { TZ: vectorTz });
    expect(t.code).toBe(0);
    const upstream = readFileSync(join(keysDir, 'paperkey-key-none.txt'), 'utf8');
    const head = (s: string): string => s.slice(0, s.indexOf('-----END PROXMOX BACKUP KEY-----'));
    expect(head(t.stdout)).toBe(head(upstream));
    const h = await run(['key', 'paperkey', join(keysDir, 'key-none.json')], {});
    expect(h.stdout.startsWith('<!DOCTYPE html>\n')).toBe(true);
    const bad = await run(['key', 'paperkey', join(keysDir, 'key-none.json'), '--output-format', 'pdf'], {});
    expect(bad.code).toBe(2);
  });

  it('import from a file and from stdin; protected keys are verified with the passphrase', () =>
    tmp(async (dir) => {
      const a = await run(['key', 'import-paperkey', join(keysDir, 'paperkey-key-none.txt'), join(dir, 'a.json')], {});
      expect(a.code).toBe(0);
      expect(readFileSync(join(dir, 'a.json'), 'utf8')).toBe(readFileSync(join(keysDir, 'key-none.json'), 'utf8').trim());
      expect(statSync(join(dir, 'a.json')).mode & 0o777).toBe(0o600);
      const paper = readFileSync(join(keysDir, 'paperkey-key-scrypt.txt'), 'utf8');
      const b = await run(['key', 'import-paperkey', '-', join(dir, 'b.json')], { PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE }, paper);
      expect(b.code).toBe(0);
      const loaded = await loadKeyFile(join(dir, 'b.json'), async () => VECTOR_PASSPHRASE);
      expect(loaded.crypt.encKey.toString('hex')).toBe(keysExpected.raw_key_hex);
      const c = await run(['key', 'import-paperkey', join(dir, 'c.json')], { PBS_ENCRYPTION_PASSWORD: 'wrong passphrase' }, paper);
      expect(c.code).toBe(2);
      expect(c.stderr).toMatch(/wrong passphrase/);
      const m = await run(['key', 'import-paperkey', join(keysDir, 'paperkey-master-private.txt'), join(dir, 'm.pem')], {
        PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE,
      });
      expect(m.code).toBe(0);
      expect(readFileSync(join(dir, 'm.pem'), 'utf8')).toBe(readFileSync(join(keysDir, 'master-private.pem'), 'utf8'));
    }));

  it('a damaged paper key is refused with a clear error and nothing is written', () =>
    tmp(async (dir) => {
      const paper = readFileSync(join(keysDir, 'paperkey-key-none.txt'), 'utf8');
      const data = JSON.parse(readFileSync(join(keysDir, 'key-none.json'), 'utf8')).data as string;
      const damaged = paper.replace(data, data.slice(0, 10) + (data[10] === 'x' ? 'y' : 'x') + data.slice(11));
      const r = await run(['key', 'import-paperkey', '-', join(dir, 'd.json')], {}, damaged);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/fingerprint/);
      const r2 = await run(['key', 'import-paperkey', '-', join(dir, 'd.json')], {}, paper.replace('"kdf"', 'kdf'));
      expect(r2.code).toBe(3);
      expect(r2.stderr).toMatch(/stdin/);
      expect(() => statSync(join(dir, 'd.json'))).toThrow();
    }));
});

describe('pbsfs key create-master-key / show-master-pubkey / import-with-master-key', () => {
  it('recovers the vector key from the snapshot blob into a new protected key file', () =>
    tmp(async (dir) => {
      const out = join(dir, 'recovered.json');
      const blob = join(datastoreDir, rsaSnap.path, 'rsa-encrypted.key.blob');
      const r = await run(
        ['--master-keyfile', join(keysDir, 'master-private.pem'), 'key', 'import-with-master-key', out, '--encrypted-keyfile', blob],
        { PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE, PBS_NEW_ENCRYPTION_PASSWORD: 'new passphrase' },
      );
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const loaded = await loadKeyFile(out, async () => 'new passphrase');
      expect(loaded.crypt.encKey.toString('hex')).toBe(keysExpected.raw_key_hex);
      const expectedCreated = JSON.parse(readFileSync(join(keysDir, 'key-scrypt.json'), 'utf8')).created;
      expect(loaded.keyConfig.created).toBe(expectedCreated);
      const wrong = await run(
        ['--master-keyfile', join(keysDir, 'master-private.pem'), 'key', 'import-with-master-key', join(dir, 'x.json'), '--encrypted-keyfile', blob],
        { PBS_ENCRYPTION_PASSWORD: 'wrong passphrase', PBS_NEW_ENCRYPTION_PASSWORD: 'new passphrase' },
      );
      expect(wrong.code).toBe(2);
      expect(wrong.stderr).toContain('master-private.pem');
    }));

  it('create-master-key writes a protected RSA-4096 pair and refuses to overwrite', () =>
    tmp(async (dir) => {
      const env = { PBS_ENCRYPTION_PASSWORD: 'master passphrase' };
      const r = await run(['key', 'create-master-key', '--dir', dir], env);
      expect(r.code).toBe(0);
      const priv = readFileSync(join(dir, 'master-private.pem'), 'utf8');
      expect(priv.startsWith('-----BEGIN ENCRYPTED PRIVATE KEY-----\n')).toBe(true);
      expect(statSync(join(dir, 'master-private.pem')).mode & 0o777).toBe(0o600);
      const s = await run(['--output-format', 'json', 'key', 'show-master-pubkey', join(dir, 'master-public.pem')], {});
      const info = JSON.parse(s.stdout);
      expect(info.length).toBe(4096);
      expect(info.exponent).toBe('65537');
      const again = await run(['key', 'create-master-key', '--dir', dir], env);
      expect(again.code).toBe(2);
      expect(readFileSync(join(dir, 'master-private.pem'), 'utf8')).toBe(priv);
    }));

  it('show-master-pubkey of the vector key matches expected.json', async () => {
    const s = await run(['--output-format', 'json', 'key', 'show-master-pubkey', join(keysDir, 'master-public.pem')], {});
    expect(s.code).toBe(0);
    const info = JSON.parse(s.stdout);
    expect(info.modulus).toBe(String(keysExpected.master_key.modulus_hex).toUpperCase());
    expect(info.length).toBe(keysExpected.master_key.bits);
  });
});

describe('passphrase from a descriptor the caller passes (PBS_ENCRYPTION_PASSWORD_FD)', () => {
  it('reads the first line from an inherited pipe', () =>
    tmp(async (dir) => {
      const out = join(dir, 'k.json');
      const child = spawn(process.execPath, [cliPath, 'key', 'import-paperkey', join(keysDir, 'paperkey-key-scrypt.txt'), out], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: vectorTz, PBS_ENCRYPTION_PASSWORD_FD: '3' },
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const fd3 = child.stdio[3] as NodeJS.WritableStream;
      fd3.write(`${VECTOR_PASSPHRASE}\nsecond line is ignored\n`);
      fd3.end();
      const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const loaded = await loadKeyFile(out, async () => VECTOR_PASSPHRASE);
      expect(loaded.crypt.encKey.toString('hex')).toBe(keysExpected.raw_key_hex);
    }));
});

describe('terminal prompt (through a pseudo-terminal made by script(1))', () => {
  /** Runs the CLI on a pty; answers each prompt (in order) once it appears. */
  function runOnPty(args: string[], answers: [RegExp, string][], cwd: string): Promise<{ code: number; output: string }> {
    const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
    const cmdline = [process.execPath, cliPath, ...args].map(q).join(' ');
    return new Promise((resolve) => {
      const child = execFile('script', ['-qec', cmdline, '/dev/null'], {
        cwd,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: 'UTC', HOME: cwd, TERM: 'dumb' },
      });
      let output = '';
      let next = 0;
      let seen = 0;
      child.stdout?.on('data', (d: Buffer | string) => {
        output += d.toString();
        const a = answers[next];
        if (a === undefined) return;
        const m = a[0].exec(output.slice(seen));
        if (m) {
          seen += m.index + m[0].length;
          next++;
          child.stdin?.write(a[1]);
        }
      });
      child.on('exit', (code) => resolve({ code: code ?? 1, output }));
    });
  }

  it('key create asks twice with echo off; a mismatch is refused', () =>
    tmp(async (dir) => {
      const ok = await runOnPty(
        ['key', 'create', 'k.json', '--kdf', 'pbkdf2'],
        [
          [/Encryption Key Password: /, 'typed secret\r'],
          [/Verify Password: /, 'typed secret\r'],
        ],
        dir,
      );
      expect(ok.output).toContain('fingerprint:');
      expect(ok.code).toBe(0);
      expect(ok.output).not.toContain('typed secret');
      const loaded = await loadKeyFile(join(dir, 'k.json'), async () => 'typed secret');
      expect(loaded.keyConfig.kdf).not.toBeNull();
      const bad = await runOnPty(
        ['key', 'create', 'k2.json'],
        [
          [/Encryption Key Password: /, 'typed secret\r'],
          [/Verify Password: /, 'other secret\r'],
        ],
        dir,
      );
      expect(bad.code).toBe(2);
      expect(bad.output).toMatch(/do not match/);
      expect(() => statSync(join(dir, 'k2.json'))).toThrow();
    }));
});
