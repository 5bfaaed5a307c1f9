/**
 * The exit statuses of every command (docs/cli.md has the table). 1 means "done, but look":
 * findings of an audit or verify, data recovered with zeros under --allow-damaged. Failures are
 * 2 and up, by the kind of the error (src/errors.ts); an internal error (a bug) has its own.
 */
export const EXIT = {
  ok: 0,
  /** Completed with findings or zero-filled damage. */
  findings: 1,
  /** Bad usage: options, arguments, key files (missing, wrong type, wrong passphrase). */
  usage: 2,
  /** Damaged or invalid data: format, digest, CRC, missing chunk, safety limit. */
  damaged: 3,
  notFound: 4,
  unsupported: 5,
  /** The operating system refused (permissions, /dev/fuse, mount, disk full). */
  io: 6,
  /** A bug in pbsfs (an error that is not one of its typed errors). */
  internal: 70,
} as const;
