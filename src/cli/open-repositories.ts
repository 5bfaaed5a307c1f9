/**
 * The repository a command reads, from --repository / PBS_REPOSITORY, and the closing of every
 * repository a command opened (server connections and reader sessions must not outlive it).
 */
import { openRepository, type RepositoryOptions } from '../store/open-repository.js';
import type { Repository } from '../store/repository.js';
import { requireRepository, type GlobalOptions } from './context.js';

const opened = new Set<Repository>();

/** Opens the command's repository; closeRepositories() closes it when the command is over. */
export async function openRepositoryArg(g: GlobalOptions, opts: RepositoryOptions = {}): Promise<Repository> {
  const repo = await openRepository(requireRepository(g), {
    ...(g.s3 ? { s3: g.s3 } : {}),
    ...(g.fingerprint !== undefined ? { fingerprint: g.fingerprint } : {}),
    ...opts,
  });
  opened.add(repo);
  return repo;
}

/** Closes what openRepositoryArg opened (errors while closing are not the command's result). */
export async function closeRepositories(): Promise<void> {
  const all = [...opened];
  opened.clear();
  await Promise.allSettled(all.map((r) => r.close()));
}
