/**
 * `--repository` to a backend: which implementation of the Repository interface a repository
 * string names. A value that starts with `/`, `.` or `~`, or names an existing directory, is a
 * local datastore; `s3://` is a bucket; anything else is `[[AUTHID@]HOST[:PORT]:]STORE` on a
 * PBS server.
 */
import { statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UnsupportedError, UsageError } from '../errors.js';
import { LocalDatastore } from './local-datastore.js';
import { PbsRepository, type PbsRepositoryOptions } from './pbs-repository.js';
import type { Repository } from './repository.js';
import { S3Repository, type S3RepositoryOptions } from './s3-repository.js';

export type RepositoryLocation =
  | { kind: 'local'; path: string }
  | { kind: 's3'; url: string }
  | { kind: 'pbs'; spec: string };

/** Options a backend may need beyond the repository string (each backend reads its own). */
export interface RepositoryOptions extends PbsRepositoryOptions {
  /** Expected SHA-256 fingerprint of the server certificate (`--fingerprint`). */
  fingerprint?: string;
  /** Environment to read secrets and defaults from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Endpoint, region, addressing and client tuning of an `s3://` repository. */
  s3?: Omit<S3RepositoryOptions, 'env'>;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Classifies a repository string without touching the network. */
export function locateRepository(spec: string): RepositoryLocation {
  if (spec === '') throw new UsageError('the repository is empty');
  if (spec === '~' || spec.startsWith('~/')) return { kind: 'local', path: join(homedir(), spec.slice(1)) };
  if (spec.startsWith('/') || spec.startsWith('.') || spec.startsWith('~') || isDirectory(spec)) return { kind: 'local', path: spec };
  if (/^s3:\/\//i.test(spec)) return { kind: 's3', url: spec };
  return { kind: 'pbs', spec };
}

/** Opens the backend a repository string names. */
export async function openRepository(spec: string, opts: RepositoryOptions = {}): Promise<Repository> {
  const loc = locateRepository(spec);
  switch (loc.kind) {
    case 'local':
      return LocalDatastore.open(loc.path);
    case 's3':
      return S3Repository.open(loc.url, { ...opts.s3, ...(opts.env ? { env: opts.env } : {}) });
    case 'pbs':
      return PbsRepository.open(loc.spec, opts);
  }
}
