/**
 * The few things Node cannot do itself when restoring, done by small standard tools run with an
 * argv array (never a shell) and data on stdin:
 *
 * - extended attributes and ACLs: Node has no xattr API, so `setfattr --restore=-` (attr package)
 *   applies a batch of them from a getfattr-style dump; ACLs go in as their
 *   system.posix_acl_* xattr values, fcaps as security.capability;
 * - nanosecond mtimes: fs.utimes takes a double in seconds and keeps microseconds at best (and
 *   Node 20 mangles negative fractional times), so a batch of (path, ns) records goes to one
 *   `python3` process calling os.utime(ns=..., follow_symlinks=False); without python3, each
 *   path whose time needs more than microseconds gets `touch -h -d @S.N` (GNU coreutils), and
 *   failing that fs.lutimes (microseconds);
 * - FIFOs and device nodes: `mkfifo` and `mknod` (coreutils);
 * - chattr flags (noatime, immutable, ...): `chattr` (e2fsprogs), last of all, since immutable
 *   and append-only would block everything after them.
 */
import { spawn } from 'node:child_process';
import { lutimes } from 'node:fs/promises';
import { IoError } from '../errors.js';
import { childProcessEnv } from '../crypto/passphrase.js';

export interface ToolResult {
  code: number;
  stderr: string;
  stdout: string;
}

/** Runs `cmd args` with `input` on stdin; resolves with the exit code, stderr and (short) stdout. */
export function runTool(cmd: string, args: string[], input?: Buffer): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: childProcessEnv() });
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => {
      if (stdout.length < 64 * 1024) stdout += b.toString('utf8');
    });
    const err: Buffer[] = [];
    let errLen = 0;
    child.stderr.on('data', (b: Buffer) => {
      if (errLen < 64 * 1024) {
        err.push(b);
        errLen += b.length;
      }
    });
    child.on('error', (e) => reject(new IoError(`cannot run ${cmd}: ${e.message}`, { cause: e })));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr: Buffer.concat(err).toString('utf8').trim(), stdout }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

/** getfattr's path quoting: bytes outside printable ASCII, and the backslash, as \ooo. */
export function quoteDumpPath(path: Buffer): string {
  let out = '';
  for (const b of path) {
    if (b > 0x20 && b < 0x7f && b !== 0x5c) out += String.fromCharCode(b);
    else out += '\\' + b.toString(8).padStart(3, '0');
  }
  return out;
}

export interface XattrJob {
  path: Buffer;
  xattrs: { name: Buffer; value: Buffer }[];
}

/** Applies xattrs to many files with one setfattr process; returns setfattr's complaints. */
export async function applyXattrs(jobs: XattrJob[]): Promise<string[]> {
  const lines: string[] = [];
  for (const j of jobs) {
    if (j.xattrs.length === 0) continue;
    lines.push(`# file: ${quoteDumpPath(j.path)}`);
    for (const x of j.xattrs) {
      // Names are printable in practice; quote them the same way to be safe.
      lines.push(`${quoteDumpPath(x.name)}=${x.value.length === 0 ? '' : '0x' + x.value.toString('hex')}`);
    }
    lines.push('');
  }
  if (lines.length === 0) return [];
  const r = await runTool('setfattr', ['--restore=-'], Buffer.from(lines.join('\n') + '\n', 'latin1'));
  if (r.code === 0) return [];
  return r.stderr === '' ? [`setfattr exited with status ${r.code}`] : r.stderr.split('\n');
}

export interface TimeJob {
  path: Buffer;
  secs: number;
  nanos: number;
}

const PY_UTIME = [
  'import os, sys',
  'data = sys.stdin.buffer.read().split(b"\\0")',
  'bad = 0',
  'for i in range(0, len(data) - 2, 3):',
  '    ns = int(data[i + 1])',
  '    try:',
  '        os.utime(data[i], ns=(ns, ns), follow_symlinks=False)',
  '    except OSError as e:',
  '        bad += 1',
  '        sys.stderr.write("%s: %s\\n" % (data[i].decode("utf-8", "replace"), e.strerror))',
  'sys.exit(1 if bad else 0)',
].join('\n');

/** The python3 interpreter's real path ('' when there is none), found once. */
let python: string | undefined;

/** Which method sets times: 'python' (exact ns), 'touch' (exact, one process per path), 'node' (us). */
export type TimeMethod = 'python' | 'touch' | 'node';

export async function detectTimeMethod(): Promise<TimeMethod> {
  if (python === undefined) {
    try {
      // The real executable, not a wrapper such as a pyenv shim (those cost ~0.2 s per start).
      const r = await runTool('python3', ['-c', 'import os, sys; os.utime; print(sys.executable)']);
      python = r.code === 0 ? r.stdout.trim() : '';
    } catch {
      python = '';
    }
  }
  return python !== '' ? 'python' : 'touch';
}

function totalNs(j: TimeJob): bigint {
  return BigInt(j.secs) * 1_000_000_000n + BigInt(j.nanos);
}

/** Sets atime and mtime (both to the archived mtime) without following symlinks. */
export async function applyTimes(jobs: TimeJob[], method: TimeMethod): Promise<string[]> {
  if (jobs.length === 0) return [];
  if (method === 'python') {
    const parts: Buffer[] = [];
    for (const j of jobs) parts.push(j.path, NUL, Buffer.from(totalNs(j).toString()), NUL, NUL);
    const r = await runTool(python || 'python3', ['-c', PY_UTIME], Buffer.concat(parts));
    return r.code === 0 ? [] : r.stderr.split('\n');
  }
  const problems: string[] = [];
  for (const j of jobs) {
    const seconds = j.secs + j.nanos / 1e9;
    // argv strings are UTF-8: paths that are not go through lutimes.
    const utf8 = Buffer.from(j.path.toString('utf8')).equals(j.path);
    if (method === 'touch' && utf8 && (j.nanos % 1000 !== 0 || j.secs < 0)) {
      const ns = totalNs(j);
      const neg = ns < 0n;
      const abs = neg ? -ns : ns;
      const stamp = `@${neg ? '-' : ''}${abs / 1_000_000_000n}.${(abs % 1_000_000_000n).toString().padStart(9, '0')}`;
      const r = await runTool('touch', ['-h', '-d', stamp, '--', j.path.toString('utf8')]).catch(() => ({ code: 1, stderr: '', stdout: '' }));
      if (r.code === 0) continue;
    }
    try {
      await lutimes(j.path, seconds, seconds);
    } catch (e) {
      problems.push(`${j.path.toString()}: cannot set times: ${(e as Error).message}`);
    }
  }
  return problems;
}

const NUL = Buffer.from([0]);

/**
 * Creates a FIFO at `path`, an ASCII path (argv is UTF-8): callers create it in their staging
 * directory and rename it into place with the raw-byte name.
 */
export async function mkfifo(path: string): Promise<void> {
  const r = await runTool('mkfifo', ['-m', '600', '--', path]);
  if (r.code !== 0) throw new IoError(`cannot create FIFO: ${r.stderr || `mkfifo exited with ${r.code}`}`, { file: path });
}

/** Creates a device node at the ASCII `path` (see mkfifo). */
export async function mknod(path: string, type: 'c' | 'b', major: number, minor: number): Promise<void> {
  const r = await runTool('mknod', ['-m', '600', '--', path, type, String(major), String(minor)]);
  if (r.code !== 0) throw new IoError(`cannot create device node: ${r.stderr || `mknod exited with ${r.code}`}`, { file: path });
}

/** pxar ENTRY flag bits (spec §13.2) and their chattr letters; FAT attributes have none. */
const CHATTR_LETTERS: [number, string][] = [
  [0x10000, 'a'], // append only
  [0x20000, 'A'], // no atime updates
  [0x40000, 'c'], // compressed
  [0x80000, 'C'], // no copy-on-write
  [0x100000, 'd'], // no dump
  [0x200000, 'D'], // synchronous directory updates
  [0x400000, 'i'], // immutable
  [0x800000, 'S'], // synchronous updates
  [0x1000000, 'm'], // no compression
  [0x2000000, 'P'], // project id inheritance
];

/** The chattr letters for a flags value ('' when none apply). */
export function chattrLetters(flags: number): string {
  return CHATTR_LETTERS.filter(([bit]) => (flags & bit) !== 0)
    .map(([, l]) => l)
    .join('');
}

export interface FlagJob {
  path: Buffer;
  letters: string;
}

/** Applies chattr flags, one chattr run per letter set and up to 200 paths. */
export async function applyFlags(jobs: FlagJob[]): Promise<string[]> {
  const problems: string[] = [];
  const groups = new Map<string, string[]>();
  for (const j of jobs) {
    // argv is UTF-8; a path that is not cannot be named to chattr.
    if (!Buffer.from(j.path.toString('utf8')).equals(j.path)) {
      problems.push(`${j.path.toString()}: flags +${j.letters} not restored (name is not UTF-8)`);
      continue;
    }
    const g = groups.get(j.letters) ?? [];
    g.push(j.path.toString('utf8'));
    groups.set(j.letters, g);
  }
  for (const [letters, paths] of groups) {
    for (let i = 0; i < paths.length; i += 200) {
      const r = await runTool('chattr', [`+${letters}`, '--', ...paths.slice(i, i + 200)]).catch((e: unknown) => ({
        code: 1,
        stderr: (e as Error).message,
        stdout: '',
      }));
      if (r.code !== 0) problems.push(...(r.stderr === '' ? [`chattr +${letters} exited with status ${r.code}`] : r.stderr.split('\n')));
    }
  }
  return problems;
}
