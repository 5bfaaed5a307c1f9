/**
 * Mounting as a normal user, the way libfuse does: the setuid `fusermount` opens /dev/fuse,
 * mounts it at a directory the user owns (checking /etc/fuse.conf for what users may ask), and
 * sends the open descriptor back over the unix socket whose number is in `_FUSE_COMMFD`. The
 * descriptor arrives as SCM_RIGHTS data, which the fdpass addon receives.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, readFileSync } from 'node:fs';
import { FuseSetupError, fuseHelperPath } from './fuse.js';
import { FdPassMissing, loadFdPass } from './fdpass.js';

export interface UserMountOptions {
  /** fsname shown as the source in /proc/mounts. */
  source: string;
  allowOther: boolean;
}

/** True when /etc/fuse.conf has an uncommented `user_allow_other` line. */
export function userAllowOther(confPath = '/etc/fuse.conf'): boolean {
  let text: string;
  try {
    text = readFileSync(confPath, 'utf8');
  } catch {
    return false;
  }
  return text.split('\n').some((l) => l.replace(/#.*/, '').trim() === 'user_allow_other');
}

/**
 * Asks fusermount to mount `mountpoint` (read-only, nosuid, nodev, default_permissions) and
 * returns the /dev/fuse descriptor it sends back. The kernel's INIT is waiting on it.
 */
export async function fusermountMount(mountpoint: string, o: UserMountOptions): Promise<number> {
  if (o.allowOther && !userAllowOther()) {
    throw new FuseSetupError("--allow-other needs 'user_allow_other' in /etc/fuse.conf when mounting as a normal user (or mount as root)");
  }
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? '/dev/fuse does not exist (the fuse kernel module is not loaded)' : `/dev/fuse is not readable and writable by uid ${process.getuid?.() ?? '?'}`;
    throw new FuseSetupError(
      `${why}: an administrator can give users access (Debian's default is mode 0666), or mount as root; ls, cat and restore need neither a mount nor root`,
    );
  }
  const helper = fuseHelperPath();
  if (helper === undefined) throw new FuseSetupError('fusermount is not installed (mounting without root needs it; install the fuse package)');
  let fdpass;
  try {
    fdpass = loadFdPass();
  } catch (e) {
    throw new FuseSetupError(e instanceof FdPassMissing ? e.message : String(e));
  }
  const [ours, theirs] = fdpass.socketpair();
  const opts = ['ro', 'nosuid', 'nodev', 'default_permissions', `fsname=${o.source.replace(/[\s,]/g, '_')}`, 'subtype=pbsfs', ...(o.allowOther ? ['allow_other'] : [])];
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^PBS_.*PASSWORD/.test(k)));
  env._FUSE_COMMFD = '3';
  let result: { code: number; stderr: string };
  try {
    result = await new Promise((resolve) => {
      const child = spawn(helper, ['-o', opts.join(','), '--', mountpoint], { stdio: ['ignore', 'ignore', 'pipe', theirs], env });
      let stderr = '';
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => (stderr += d));
      child.on('error', (e) => resolve({ code: 127, stderr: e.message }));
      child.on('close', (code) => resolve({ code: code ?? 1, stderr: stderr.trim() }));
    });
  } finally {
    closeSync(theirs);
  }
  try {
    if (result.code !== 0) {
      const msg = result.stderr.replace(/^fusermount3?: /, '') || `fusermount exited with ${result.code}`;
      throw new FuseSetupError(`mount of ${mountpoint} failed: ${msg}`);
    }
    // fusermount has exited: its message is in the socket buffer, or the socket is closed
    // (then recvFd throws instead of waiting).
    try {
      return fdpass.recvFd(ours);
    } catch (e) {
      spawnSync(helper, ['-uz', mountpoint], { stdio: 'ignore' });
      throw new FuseSetupError(`fusermount mounted ${mountpoint} but sent no /dev/fuse descriptor: ${e instanceof Error ? e.message : String(e)}`);
    }
  } finally {
    closeSync(ours);
  }
}
