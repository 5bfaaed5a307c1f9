/**
 * Where a bucket is and how to sign for it: `s3://BUCKET[/STORE]`, the endpoint, region,
 * addressing style and credentials, from options first and then the environment, read the way
 * the AWS tools read them. Secrets come only from the environment or the shared credentials
 * file, never from argv, and are never part of a message.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { NotFoundError, UsageError } from '../errors.js';
import { isValidBackupId } from './backup-ref.js';

/** PBS's default region for an S3 endpoint. */
export const DEFAULT_S3_REGION = 'us-west-1';

export interface S3Location {
  bucket: string;
  /** The datastore name (the key prefix); undefined for `s3://BUCKET` alone. */
  store: string | undefined;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3Options {
  /** --s3-endpoint (else PBS_S3_ENDPOINT, else AWS for the region). */
  endpoint?: string | undefined;
  /** --s3-region (else AWS_REGION, else AWS_DEFAULT_REGION, else us-west-1). */
  region?: string | undefined;
  /** --s3-vhost-style: `{bucket}.host` addressing for a custom endpoint. */
  vhostStyle?: boolean | undefined;
}

export interface S3Config {
  location: S3Location;
  /** Base URL without the bucket (path style) or with it in the host (vhost style). */
  endpoint: URL;
  region: string;
  vhostStyle: boolean;
  credentials: S3Credentials;
  /** SHA-256 fingerprint of the server certificate to pin (PBS_S3_FINGERPRINT), lower-case hex with colons. */
  fingerprint: string | undefined;
  /** True when the endpoint was written with http:// (plain text, warned about once). */
  plainHttp: boolean;
}

/** Bucket names as S3 allows them (3-63 chars, lower case, digits, dots and dashes). */
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function isS3Repository(repo: string): boolean {
  return repo.startsWith('s3://');
}

/** Parses `s3://BUCKET` or `s3://BUCKET/STORE`. */
export function parseS3Repository(repo: string): S3Location {
  if (!isS3Repository(repo)) throw new UsageError(`not an S3 repository: ${JSON.stringify(repo)} (expected s3://BUCKET/STORE)`);
  const rest = repo.slice(5).replace(/\/+$/, '');
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const store = slash < 0 ? undefined : rest.slice(slash + 1);
  if (!BUCKET_RE.test(bucket) || bucket.includes('..')) {
    throw new UsageError(`bad S3 bucket name ${JSON.stringify(bucket)} in ${JSON.stringify(repo)}: 3-63 lower-case letters, digits, '.' and '-'`);
  }
  // PBS datastore names follow the safe-id rule; that also keeps the key prefix free of '/' and '..'.
  if (store !== undefined && !isValidBackupId(store)) {
    throw new UsageError(`bad datastore name ${JSON.stringify(store)} in ${JSON.stringify(repo)}: use letters, digits, '_', '.', '-'`);
  }
  return { bucket, store };
}

/** Reads the `[profile]` section of an AWS shared credentials file. */
export function parseCredentialsFile(text: string, profile: string, file: string): S3Credentials {
  let section: string | undefined;
  const values = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (head) {
      section = head[1];
      continue;
    }
    const eq = line.indexOf('=');
    if (section !== profile || eq < 0) continue;
    values.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  const accessKeyId = values.get('aws_access_key_id');
  const secretAccessKey = values.get('aws_secret_access_key');
  if (!accessKeyId || !secretAccessKey) {
    throw new UsageError(`profile ${JSON.stringify(profile)} has no aws_access_key_id and aws_secret_access_key`, { file });
  }
  const sessionToken = values.get('aws_session_token');
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}

/** Credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN], else the shared credentials file. */
export function credentialsFromEnvironment(env: NodeJS.ProcessEnv = process.env): S3Credentials {
  const id = env.AWS_ACCESS_KEY_ID;
  const secret = env.AWS_SECRET_ACCESS_KEY;
  if (id && secret) return { accessKeyId: id, secretAccessKey: secret, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
  if (id || secret) throw new UsageError('set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (only one of them is set)');
  const file = env.AWS_SHARED_CREDENTIALS_FILE || join(env.HOME || homedir(), '.aws', 'credentials');
  const profile = env.AWS_PROFILE || 'default';
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(
        'no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE / ~/.aws/credentials with AWS_PROFILE',
        { file, cause: e },
      );
    }
    throw new UsageError(`cannot read the S3 credentials file: ${(e as Error).message}`, { file, cause: e });
  }
  return parseCredentialsFile(text, profile, file);
}

/** A pinned certificate fingerprint in PBS's form (64 hex digits, colons optional). */
export function normaliseFingerprint(s: string): string {
  const hex = s.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new UsageError('PBS_S3_FINGERPRINT must be a SHA-256 fingerprint (64 hex digits, colons allowed)');
  return hex.match(/../g)!.join(':');
}

/** The full configuration for `repo`, from the options and the environment. */
export function resolveS3Config(repo: string, opts: S3Options = {}, env: NodeJS.ProcessEnv = process.env): S3Config {
  const location = parseS3Repository(repo);
  const region = opts.region || env.AWS_REGION || env.AWS_DEFAULT_REGION || DEFAULT_S3_REGION;
  if (!/^[a-z0-9-]{1,64}$/.test(region)) throw new UsageError(`bad S3 region ${JSON.stringify(region)}`);
  const written = opts.endpoint || env.PBS_S3_ENDPOINT;
  let endpoint: URL;
  let vhostStyle: boolean;
  if (written) {
    try {
      endpoint = new URL(written.includes('://') ? written : `https://${written}`);
    } catch {
      throw new UsageError(`bad S3 endpoint ${JSON.stringify(written)} (expected a URL such as https://s3.example.com:9000)`);
    }
    if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:') {
      throw new UsageError(`the S3 endpoint must be an https:// (or explicitly http://) URL, got ${JSON.stringify(written)}`);
    }
    if (endpoint.username || endpoint.password || endpoint.search || endpoint.hash) {
      throw new UsageError('the S3 endpoint URL must not carry credentials, a query or a fragment');
    }
    // Custom endpoints (MinIO, Ceph, Garage, ...) mostly serve path style; vhost is asked for.
    vhostStyle = opts.vhostStyle === true;
  } else {
    endpoint = new URL(`https://s3.${region}.amazonaws.com`);
    vhostStyle = true;
  }
  if (vhostStyle) endpoint.hostname = `${location.bucket}.${endpoint.hostname}`;
  const fp = env.PBS_S3_FINGERPRINT;
  return {
    location,
    endpoint,
    region,
    vhostStyle,
    credentials: credentialsFromEnvironment(env),
    fingerprint: fp ? normaliseFingerprint(fp) : undefined,
    plainHttp: endpoint.protocol === 'http:',
  };
}
