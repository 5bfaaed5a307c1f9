/**
 * The key file a reading command uses: --keyfile, else the default location that `key create`
 * writes to (as proxmox-backup-client reads with it when --keyfile is absent). A file that is
 * something else a user might mistake for a key file (a PEM master key, a paper key) is named
 * as such, with the command that takes it. Key file problems are usage errors (exit 2).
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { loadKeyFile } from '../crypto/key-config.js';
import { NotFoundError, PbsfsError, UsageError, rewrapError } from '../errors.js';

/** $XDG_CONFIG_HOME/proxmox-backup/encryption-key.json, as the upstream client. */
export function defaultKeyPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(homedir(), '.config');
  return join(base, 'proxmox-backup', 'encryption-key.json');
}

/** The default key file when it exists (else undefined: then no key is used). */
export function existingDefaultKey(): string | undefined {
  const p = defaultKeyPath();
  return existsSync(p) ? p : undefined;
}

function head(path: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const b = Buffer.alloc(4096);
    return b.subarray(0, readSync(fd, b, 0, b.length, 0)).toString('latin1');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** What a file that is not a key file is, when it is one of the look-alikes, with the way to use it. */
export function keyLookAlike(path: string): string | undefined {
  const h = head(path);
  if (h.includes('-----BEGIN PROXMOX BACKUP KEY-----')) {
    return `is a paper key, not a key file: turn it into one with \`pbsfs key import-paperkey ${path} KEYFILE\``;
  }
  if (/-----BEGIN (RSA |ENCRYPTED )?PRIVATE KEY-----/.test(h)) return 'is a PEM private key (an RSA master key), not a key file: give it as --master-keyfile';
  if (/-----BEGIN (RSA )?PUBLIC KEY-----/.test(h)) {
    return 'is a PEM public key (the public half of a master key): reading needs the private master key as --master-keyfile, or the key file';
  }
  return undefined;
}

/** Loads the key file given as --keyfile (or found at the default location). */
export async function loadKeyFileArg(path: string): ReturnType<typeof loadKeyFile> {
  const lookAlike = keyLookAlike(path);
  if (lookAlike !== undefined) throw new UsageError(lookAlike, { file: path, errorCode: 'keyfile-wrong-type' });
  try {
    return await loadKeyFile(path);
  } catch (e) {
    if (!(e instanceof PbsfsError)) throw e;
    if (e instanceof NotFoundError) throw new UsageError('key file does not exist', { file: path, cause: e, errorCode: 'keyfile-missing' });
    if (e.kind === 'format') throw new UsageError(e.message, { cause: e, errorCode: 'keyfile-invalid' });
    throw rewrapError(e, e.message, { cause: e }) ?? e;
  }
}
