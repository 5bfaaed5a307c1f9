/**
 * Open file descriptors of every process we may inspect, from /proc/PID/fd (processes that end
 * or that we may not read are skipped): how tests find a detached mount daemon, or prove that
 * nothing keeps a datastore open after unmount.
 */
import { readdirSync, readlinkSync } from 'node:fs';

export interface OpenFd {
  pid: number;
  fd: string;
  /** What the descriptor points at (a path, or e.g. `pipe:[123]`). */
  target: string;
}

export function openFds(): OpenFd[] {
  const found: OpenFd[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        found.push({ pid: Number(pid), fd, target: readlinkSync(`/proc/${pid}/fd/${fd}`) });
      } catch {
        // closed meanwhile
      }
    }
  }
  return found;
}
