import { describe, expect, it } from 'vitest';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { getPassphrase, splitShellWords } from '../../src/crypto/passphrase.js';
import { CryptoError, NotFoundError, UsageError } from '../../src/errors.js';

const P = 'PBS_ENCRYPTION_PASSWORD';
const get = (env: NodeJS.ProcessEnv) => getPassphrase({ env, interactive: false });

describe('getPassphrase sources', () => {
  it('the variable itself, first line only', async () => {
    expect(await get({ [P]: 'pass one' })).toBe('pass one');
    expect(await get({ [P]: 'first\nsecond' })).toBe('first');
  });

  it('order: value, then _FD, _FILE, _CMD', async () => {
    await withDir(
      async ({ path }) => {
        const file = join(path, 'pw');
        await writeFile(file, 'from file\nignored\n');
        expect(await get({ [P]: 'direct', [`${P}_FILE`]: file, [`${P}_CMD`]: 'echo cmd' })).toBe('direct');
        expect(await get({ [`${P}_FILE`]: file, [`${P}_CMD`]: 'echo cmd' })).toBe('from file');
        expect(await get({ [`${P}_CMD`]: 'echo cmd' })).toBe('cmd');
        const fd = openSync(file, 'r');
        try {
          expect(await get({ [`${P}_FD`]: String(fd), [`${P}_FILE`]: '/nonexistent' })).toBe('from file');
        } finally {
          closeSync(fd);
        }
      },
      { unsafeCleanup: true },
    );
  });

  it('_FD from a pipe reads only the first line', async () => {
    await withDir(
      async ({ path }) => {
        const fifo = join(path, 'fifo');
        execFileSync('mkfifo', [fifo]);
        // O_RDWR on a FIFO does not block on Linux and keeps a writer open.
        const fd = openSync(fifo, constants.O_RDWR);
        try {
          writeSync(fd, 'piped secret\nnext line\n');
          expect(await get({ [`${P}_FD`]: String(fd) })).toBe('piped secret');
        } finally {
          closeSync(fd);
        }
      },
      { unsafeCleanup: true },
    );
  });

  it('_CMD is split into words and run without a shell; first line of stdout', async () => {
    expect(await get({ [`${P}_CMD`]: "printf 'line one\\nline two\\n'" })).toBe('line one');
    expect(await get({ [`${P}_CMD`]: "echo 'two  spaces' \"and \\\"quotes\\\"\"" })).toBe('two  spaces and "quotes"');
    // no shell: a pipe symbol is just an argument to echo
    expect(await get({ [`${P}_CMD`]: 'echo a | cat' })).toBe('a | cat');
  });

  it('_CMD failure, missing _FILE, bad _FD and no source are typed errors', async () => {
    await expect(get({ [`${P}_CMD`]: 'false' })).rejects.toThrow(CryptoError);
    await expect(get({ [`${P}_CMD`]: '/nonexistent/program' })).rejects.toThrow(CryptoError);
    await expect(get({ [`${P}_FILE`]: '/nonexistent/pw' })).rejects.toThrow(NotFoundError);
    await expect(get({ [`${P}_FD`]: 'three' })).rejects.toThrow(UsageError);
    await expect(get({})).rejects.toThrow(/no passphrase source: set PBS_ENCRYPTION_PASSWORD/);
    await expect(get({})).rejects.toThrow(CryptoError);
  });

  it('non-UTF-8 passphrase file is refused', async () => {
    await withDir(
      async ({ path }) => {
        const file = join(path, 'pw');
        await writeFile(file, Buffer.from([0x66, 0xff, 0xfe, 0x0a]));
        await expect(get({ [`${P}_FILE`]: file })).rejects.toThrow(/UTF-8/);
      },
      { unsafeCleanup: true },
    );
  });
});

describe('splitShellWords', () => {
  it('quotes and escapes', () => {
    expect(splitShellWords('a b\tc')).toEqual(['a', 'b', 'c']);
    expect(splitShellWords(`pass show 'my key'`)).toEqual(['pass', 'show', 'my key']);
    expect(splitShellWords(`a\\ b "c\\"d" ''`)).toEqual(['a b', 'c"d', '']);
    expect(splitShellWords(`"a'b" 'c"d'`)).toEqual(["a'b", 'c"d']);
    expect(() => splitShellWords(`'open`)).toThrow(UsageError);
    expect(() => splitShellWords(`"open`)).toThrow(UsageError);
  });
});
