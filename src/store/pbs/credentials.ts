/**
 * Where the PBS backend's secrets and settings come from, as proxmox-backup-client reads them:
 * the password or API token secret from PBS_PASSWORD, PBS_PASSWORD_FD, PBS_PASSWORD_FILE,
 * PBS_PASSWORD_CMD (first line only) or a prompt on the terminal; the certificate fingerprint
 * from --fingerprint or the PBS_FINGERPRINT sources. Secrets never come from argv and are never
 * put into a message.
 */
import { CryptoError, UsageError } from '../../errors.js';
import { getPassphrase } from '../../crypto/passphrase.js';
import { isTokenAuthId } from './address.js';
import { checkFingerprintSyntax, type PbsTimeouts } from './client.js';

const SUFFIXES = ['', '_FD', '_FILE', '_CMD'];

function hasSource(env: NodeJS.ProcessEnv, name: string): boolean {
  return SUFFIXES.some((s) => env[`${name}${s}`] !== undefined);
}

/** Reads the password or token secret once, when the server first needs it. */
export function secretReader(authId: string, env: NodeJS.ProcessEnv, interactive: boolean): () => Promise<string> {
  return async () => {
    if (!hasSource(env, 'PBS_PASSWORD') && (isTokenAuthId(authId) || !interactive)) {
      throw new CryptoError(
        isTokenAuthId(authId)
          ? `API token secret must be provided for ${authId}: set PBS_PASSWORD, PBS_PASSWORD_FD, PBS_PASSWORD_FILE or PBS_PASSWORD_CMD`
          : `no password for ${authId}: set PBS_PASSWORD, PBS_PASSWORD_FD, PBS_PASSWORD_FILE or PBS_PASSWORD_CMD, or run on a terminal`,
      );
    }
    return getPassphrase({ env, envPrefix: 'PBS_PASSWORD', prompt: `Password for "${authId}": `, interactive });
  };
}

/** The pinned fingerprint: --fingerprint, else the PBS_FINGERPRINT sources, else none. */
export async function pinnedFingerprint(given: string | undefined, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (given !== undefined) return checkFingerprintSyntax(given, '--fingerprint');
  if (!hasSource(env, 'PBS_FINGERPRINT')) return undefined;
  const v = await getPassphrase({ env, envPrefix: 'PBS_FINGERPRINT', interactive: false });
  return checkFingerprintSyntax(v, 'PBS_FINGERPRINT');
}

export const DEFAULT_TIMEOUTS: PbsTimeouts = { connectMs: 10_000, idleMs: 30_000 };

/** PBSFS_PBS_TIMEOUT (seconds): the per-request idle timeout, default 30. */
export function timeoutsFromEnv(env: NodeJS.ProcessEnv): PbsTimeouts {
  const v = env.PBSFS_PBS_TIMEOUT;
  if (v === undefined || v === '') return DEFAULT_TIMEOUTS;
  const s = Number(v);
  if (!Number.isFinite(s) || s <= 0 || s > 3600) throw new UsageError(`PBSFS_PBS_TIMEOUT must be a number of seconds from 0 to 3600, got ${JSON.stringify(v)}`);
  const ms = Math.round(s * 1000);
  return { connectMs: Math.min(DEFAULT_TIMEOUTS.connectMs, Math.max(ms, 1)), idleMs: ms };
}
