/**
 * Where the key-file passphrase comes from (spec 4.8), in this order, first defined wins:
 *   PBS_ENCRYPTION_PASSWORD       the value itself
 *   PBS_ENCRYPTION_PASSWORD_FD    read from that open file descriptor
 *   PBS_ENCRYPTION_PASSWORD_FILE  read from that file
 *   PBS_ENCRYPTION_PASSWORD_CMD   stdout of that command (split into words, run without a shell)
 * and then a prompt on the terminal with echo off. Only the first line of any source is used.
 * Never from argv: command lines are visible to every user of the machine.
 */
import { readFileSync, readSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { CryptoError, UsageError, fromSystemError } from '../errors.js';

/** Passphrase sources are small; refuse to read more than this. */
const MAX_SOURCE_BYTES = 64 * 1024;

export interface GetPassphraseOptions {
  env?: NodeJS.ProcessEnv;
  /** Terminal prompt; default "Encryption Key Password: ". */
  prompt?: string;
  /** Ask twice on the terminal and require both to match (creating a key). */
  confirm?: boolean;
  /** Prefix of the environment variables; default "PBS_ENCRYPTION_PASSWORD". */
  envPrefix?: string;
  /** Whether a terminal prompt may be used; default: stdin is a TTY. */
  interactive?: boolean;
}

export async function getPassphrase(opts: GetPassphraseOptions = {}): Promise<string> {
  const env = opts.env ?? process.env;
  const name = opts.envPrefix ?? 'PBS_ENCRYPTION_PASSWORD';

  const direct = env[name];
  if (direct !== undefined) return firstLine(Buffer.from(direct, 'utf8'), name);

  const fdVar = env[`${name}_FD`];
  if (fdVar !== undefined) {
    if (!/^\d+$/.test(fdVar.trim())) throw new UsageError(`${name}_FD must be a file descriptor number, got ${JSON.stringify(fdVar)}`);
    return firstLine(readFd(Number(fdVar.trim()), `${name}_FD`), `${name}_FD`);
  }

  const fileVar = env[`${name}_FILE`];
  if (fileVar !== undefined) {
    let data: Buffer;
    try {
      data = readFileSync(fileVar);
    } catch (e) {
      throw fromSystemError(e, fileVar, `cannot read the passphrase file named by ${name}_FILE`);
    }
    return firstLine(data.subarray(0, MAX_SOURCE_BYTES), `${name}_FILE`);
  }

  const cmdVar = env[`${name}_CMD`];
  if (cmdVar !== undefined) return firstLine(runCommand(cmdVar, `${name}_CMD`), `${name}_CMD`);

  if (opts.interactive ?? process.stdin.isTTY === true) {
    const prompt = opts.prompt ?? 'Encryption Key Password: ';
    const first = await promptHidden(prompt);
    if (opts.confirm) {
      const second = await promptHidden('Verify Password: ');
      if (first !== second) throw new UsageError('the passphrases do not match');
    }
    return first;
  }
  throw new CryptoError(
    `no passphrase source: set ${name}, ${name}_FD, ${name}_FILE or ${name}_CMD, or run on a terminal`,
  );
}

/**
 * The environment for processes pbsfs starts (restore's helper tools, a passphrase command):
 * ours without the variables that hold a passphrase itself (PBS_ENCRYPTION_PASSWORD and the like;
 * their _FD/_FILE/_CMD forms only point at one). A child has no use for it, and any process of
 * the same user could read it from /proc/<pid>/environ while the child runs.
 */
export function childProcessEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    if (/^PBS_[A-Z_]*(PASSWORD|PASSPHRASE)$/.test(k)) continue;
    out[k] = v;
  }
  return out;
}

/** The bytes up to the first newline, as UTF-8 (invalid UTF-8 is an error). */
function firstLine(data: Buffer, source: string): string {
  const nl = data.indexOf(0x0a);
  const line = nl >= 0 ? data.subarray(0, nl) : data;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(line);
  } catch {
    throw new CryptoError(`the passphrase from ${source} is not valid UTF-8`);
  }
}

/** How long to wait for a non-blocking descriptor to deliver the passphrase. */
const FD_WAIT_MS = 60_000;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function readFd(fd: number, source: string): Buffer {
  const buf = Buffer.alloc(MAX_SOURCE_BYTES);
  let len = 0;
  let waited = 0;
  try {
    // Stop at the first newline: the rest of a pipe may belong to someone else.
    while (len < buf.length) {
      let n: number;
      try {
        n = readSync(fd, buf, len, buf.length - len, null);
      } catch (e) {
        // A non-blocking pipe with nothing in it yet: wait a little, within a bound.
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        if (waited >= FD_WAIT_MS) throw new CryptoError(`timed out waiting for the passphrase on ${source}`);
        sleepSync(20);
        waited += 20;
        continue;
      }
      if (n === 0) break;
      const nl = buf.indexOf(0x0a, len);
      len += n;
      if (nl >= 0 && nl < len) break;
    }
  } catch (e) {
    if (e instanceof CryptoError) throw e;
    throw fromSystemError(e, `fd ${fd}`, `cannot read the passphrase from ${source}`);
  }
  return buf.subarray(0, len);
}

function runCommand(cmdline: string, source: string): Buffer {
  const argv = splitShellWords(cmdline, source);
  if (argv.length === 0) throw new UsageError(`${source} is empty`);
  const r = spawnSync(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: MAX_SOURCE_BYTES,
    shell: false,
    env: childProcessEnv(),
  });
  if (r.error !== undefined) {
    throw new CryptoError(`the passphrase command from ${source} (${argv[0]}) failed: ${r.error.message}`);
  }
  if (r.status !== 0) {
    const why = r.signal !== null ? `was killed by ${r.signal}` : `exited with status ${r.status}`;
    throw new CryptoError(`the passphrase command from ${source} (${argv[0]}) ${why}`);
  }
  return r.stdout;
}

/**
 * Splits a command line into words the way a POSIX shell would for a simple command, without
 * expansions: whitespace separates words; '…' is literal; "…" allows \" \\ \$ \` escapes;
 * a backslash outside quotes escapes the next character.
 */
export function splitShellWords(s: string, source = 'command'): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      i++;
    } else if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw new UsageError(`${source}: unterminated single quote`);
      cur += s.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      inWord = true;
      for (;;) {
        if (i >= s.length) throw new UsageError(`${source}: unterminated double quote`);
        const d = s[i]!;
        if (d === '"') {
          i++;
          break;
        }
        if (d === '\\' && i + 1 < s.length && '"\\$`\n'.includes(s[i + 1]!)) {
          if (s[i + 1] !== '\n') cur += s[i + 1];
          i += 2;
          continue;
        }
        cur += d;
        i++;
      }
    } else if (c === '\\') {
      if (i + 1 >= s.length) throw new UsageError(`${source}: trailing backslash`);
      if (s[i + 1] !== '\n') {
        cur += s[i + 1];
        inWord = true;
      }
      i += 2;
    } else {
      cur += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** Bytes typed after the Enter that ended the previous prompt (fast typing, pasted input). */
let pendingInput: Buffer = Buffer.alloc(0);

/** Reads one line from the terminal with echo off. Ctrl-C aborts. */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    // Echo off before the prompt shows: anything typed after seeing it must not be echoed.
    const wasRaw = stdin.isRaw;
    stdin.setRawMode(true);
    process.stderr.write(prompt);
    const bytes: number[] = [];
    let done = false;
    const finish = (err?: Error): void => {
      done = true;
      stdin.removeListener('data', onData);
      stdin.setRawMode(wasRaw);
      stdin.pause();
      process.stderr.write('\n');
      if (err) {
        reject(err);
        return;
      }
      try {
        resolve(new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes)));
      } catch {
        reject(new CryptoError('the passphrase typed is not valid UTF-8'));
      }
    };
    const onData = (chunk: Buffer): void => {
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i]!;
        const rest = (): void => {
          pendingInput = Buffer.from(chunk.subarray(i + 1));
        };
        if (b === 0x0d || b === 0x0a) {
          // A CRLF pair is one Enter.
          if (b === 0x0d && chunk[i + 1] === 0x0a) i++;
          rest();
          return finish();
        }
        if (b === 0x03) return finish(new UsageError('aborted'));
        if (b === 0x04) {
          if (bytes.length === 0) return finish(new UsageError('aborted'));
          rest();
          return finish();
        }
        if (b === 0x7f || b === 0x08) {
          // Drop one whole UTF-8 character.
          while (bytes.length > 0 && (bytes[bytes.length - 1]! & 0xc0) === 0x80) bytes.pop();
          bytes.pop();
          continue;
        }
        if (bytes.length < MAX_SOURCE_BYTES) bytes.push(b);
      }
    };
    if (pendingInput.length > 0) {
      const p = pendingInput;
      pendingInput = Buffer.alloc(0);
      onData(p);
      if (done) return;
    }
    stdin.on('data', onData);
    stdin.resume();
  });
}
