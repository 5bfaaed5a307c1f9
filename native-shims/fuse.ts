/**
 * The operating-system side of a FUSE mount: the /dev/fuse device, mount(8) and fusermount.
 *
 * pbsfs does not load a native FUSE binding. It opens /dev/fuse itself, asks mount(8) to attach
 * that descriptor at the mount point (the kernel's `fd=N` mount option; the descriptor is passed
 * to mount(8) as its fd 3) and then speaks the kernel protocol in TypeScript (src/fuse/). Mounting
 * this way needs root (CAP_SYS_ADMIN); a normal user mounts through the setuid fusermount
 * instead (./fusermount.ts).
 *
 * Nothing here runs unless a command mounts or unmounts, so other commands never touch FUSE.
 */
import { spawn } from 'node:child_process';
import { constants, openSync, closeSync, statSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export class FuseSetupError extends Error {}

const SETUP_HINT = 'run scripts/setup.sh as root';

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = `${dir}/${cmd}`;
    if (dir !== '' && existsSync(p)) return p;
  }
  for (const p of [`/usr/bin/${cmd}`, `/bin/${cmd}`, `/usr/sbin/${cmd}`, `/sbin/${cmd}`]) if (existsSync(p)) return p;
  return undefined;
}

/** The fusermount helper (libfuse 2's, else libfuse 3's), if installed. */
export function fuseHelperPath(): string | undefined {
  return which('fusermount') ?? which('fusermount3');
}

/** Opens /dev/fuse read-write; clear errors when it is missing or refused. */
export function openFuseDevice(): number {
  if (!existsSync('/dev/fuse')) throw new FuseSetupError(`/dev/fuse does not exist (the fuse kernel module is not loaded; ${SETUP_HINT})`);
  try {
    return openSync('/dev/fuse', constants.O_RDWR);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FuseSetupError(`cannot open /dev/fuse: ${code ?? String(e)} (${SETUP_HINT})`);
  }
}

export function closeFuseDevice(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

export interface KernelMountOptions {
  /** Shown as the source in /proc/mounts. */
  source: string;
  allowOther: boolean;
  /** Owner of the mount (the kernel lets only this user in without allow_other). */
  userId: number;
  groupId: number;
}

function run(cmd: string, args: string[], extraFd?: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolvePromise) => {
    const stdio: (number | 'ignore' | 'pipe')[] = ['ignore', 'ignore', 'pipe'];
    if (extraFd !== undefined) stdio.push(extraFd);
    // Helpers never see passphrase variables (the mount process may hold one).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^PBS_.*PASSWORD/.test(k)));
    const child = spawn(cmd, args, { stdio, env });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (stderr += d));
    child.on('error', (e) => resolvePromise({ code: 127, stderr: e.message }));
    child.on('close', (code) => resolvePromise({ code: code ?? 1, stderr: stderr.trim() }));
  });
}

/**
 * Attaches the open /dev/fuse descriptor at `mountpoint` (read-only, nosuid, nodev,
 * default_permissions). The kernel then sends INIT, which the caller's session must answer.
 */
export async function kernelMount(fd: number, mountpoint: string, o: KernelMountOptions): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new FuseSetupError('kernelMount needs root (a normal user mounts through fusermount)');
  }
  const mountCmd = which('mount');
  if (mountCmd === undefined) throw new FuseSetupError(`mount(8) is not installed (${SETUP_HINT})`);
  const opts = [
    'ro',
    'nosuid',
    'nodev',
    'fd=3',
    'rootmode=40000',
    `user_id=${o.userId}`,
    `group_id=${o.groupId}`,
    'default_permissions',
    ...(o.allowOther ? ['allow_other'] : []),
  ].join(',');
  // -i: no /sbin/mount.fuse helper; -n: no utab entry. The descriptor becomes fd 3 of mount(8).
  const r = await run(mountCmd, ['-i', '-n', '-t', 'fuse.pbsfs', '-o', opts, o.source.replace(/[\s,]/g, '_'), mountpoint], fd);
  if (r.code !== 0) {
    throw new FuseSetupError(`mount of ${mountpoint} failed: ${r.stderr.replace(/^mount: /, '') || `mount exited with ${r.code}`}`);
  }
}

export type UnmountResult = 'unmounted' | 'busy' | 'not-mounted' | 'failed';

/**
 * Unmounts with fusermount -u (umount -l / fusermount -uz when `lazy`). 'busy' means files are
 * still open there.
 */
export async function kernelUnmount(mountpoint: string, lazy = false): Promise<{ result: UnmountResult; message: string }> {
  const fusermount = fuseHelperPath();
  let r: { code: number; stderr: string };
  if (fusermount !== undefined) r = await run(fusermount, [lazy ? '-uz' : '-u', mountpoint]);
  else {
    const umount = which('umount');
    if (umount === undefined) throw new FuseSetupError(`neither fusermount nor umount is installed (${SETUP_HINT})`);
    r = await run(umount, lazy ? ['-l', mountpoint] : [mountpoint]);
  }
  if (r.code === 0) return { result: 'unmounted', message: '' };
  const msg = r.stderr.replace(/^(fusermount3?|umount): /, '');
  if (/busy/i.test(msg)) return { result: 'busy', message: msg };
  if (/not (found|mounted)|not a mount|entry for .* not found/i.test(msg)) return { result: 'not-mounted', message: msg };
  return { result: 'failed', message: msg || `exit status ${r.code}` };
}

export interface MountInfo {
  mountpoint: string;
  fstype: string;
  source: string;
  /** "major:minor" of the mount's device. */
  dev: string;
}

function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The mount whose mount point is exactly `path` (after resolving it), if any. */
export function findMount(path: string): MountInfo | undefined {
  const abs = resolve(path);
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  let found: MountInfo | undefined;
  for (const line of text.split('\n')) {
    const parts = line.split(' ');
    const sep = parts.indexOf('-');
    if (parts.length < 10 || sep < 0) continue;
    const mp = unescapeMountField(parts[4]!);
    if (mp === abs) found = { mountpoint: mp, fstype: parts[sep + 1]!, source: unescapeMountField(parts[sep + 2]!), dev: parts[2]! };
  }
  return found; // the last one listed is the one on top
}

/**
 * Raises the kernel's read-ahead window of a mount (its backing-device info), best effort. The
 * FUSE default (128 KiB) makes a sequential reader wait for every 128 KiB; a window of several
 * MiB lets the kernel keep more reads in flight, which a chunked backup source needs.
 * Reads the device number from /proc/self/mountinfo: the mount itself is not touched (this
 * process may be the one serving it).
 */
export function setReadAheadKb(mountpoint: string, kb: number): boolean {
  const m = findMount(mountpoint);
  if (m === undefined) return false;
  try {
    writeFileSync(`/sys/class/bdi/${m.dev}/read_ahead_kb`, String(kb));
    return true;
  } catch {
    return false;
  }
}

/** Device number of a path; undefined when stat fails (e.g. ENOTCONN on a dead FUSE mount). */
export function deviceOf(path: string): number | undefined {
  try {
    return statSync(path).dev;
  } catch {
    return undefined;
  }
}

export function parentDir(path: string): string {
  return dirname(resolve(path));
}
