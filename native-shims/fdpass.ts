/**
 * Loads the fdpass addon (native-shims/fdpass/fdpass.c, built by scripts/setup.sh into
 * dist/native-shims/fdpass.node): socketpair() and receiving a descriptor sent with SCM_RIGHTS,
 * which Node's own net module cannot do. Loaded only when a non-root user mounts.
 */
import { createRequire } from 'node:module';

export interface FdPass {
  /** An AF_UNIX stream socket pair, both ends close-on-exec. */
  socketpair(): [number, number];
  /** Receives one descriptor sent with SCM_RIGHTS on `socketFd` (blocks until a message comes). */
  recvFd(socketFd: number): number;
}

export class FdPassMissing extends Error {}

let loaded: FdPass | undefined;

export function loadFdPass(): FdPass {
  if (loaded !== undefined) return loaded;
  const require = createRequire(import.meta.url);
  try {
    loaded = require('./fdpass.node') as FdPass;
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new FdPassMissing(
      `the fdpass helper that mounting without root needs is not built (${why}); run scripts/setup.sh, or mount as root`,
    );
  }
  return loaded;
}
