/**
 * Cluster chains as runs of consecutive clusters. A chain is attacker-controlled: it may loop,
 * point outside the data area, end early or go on past the file's size; every case is a
 * FormatError naming the chain's owner. A walk is bounded by the cluster count it may need.
 */
import { FormatError } from '../../errors.js';
import type { FatTable } from './fat-table.js';

/** `count` clusters starting at `cluster`, holding the owner's clusters [index, index + count). */
export interface ClusterRun {
  index: number;
  cluster: number;
  count: number;
}

export interface ChainOwner {
  /** Image name for the error. */
  file: string;
  /** Describes whose chain it is: "the file whose entry is at byte N". */
  what: string;
  /** Byte offset of the owner's directory entry, for the error. */
  offset: number;
}

function fail(owner: ChainOwner, problem: string): never {
  throw new FormatError(`the cluster chain of ${owner.what} ${problem}`, { file: owner.file, offset: owner.offset });
}

function push(runs: ClusterRun[], index: number, cluster: number): void {
  const last = runs[runs.length - 1];
  if (last !== undefined && last.cluster + last.count === cluster) last.count++;
  else runs.push({ index, cluster, count: 1 });
}

function inRuns(runs: ClusterRun[], cluster: number): boolean {
  return runs.some((r) => cluster >= r.cluster && cluster < r.cluster + r.count);
}

/**
 * Follows a chain of exactly `expected` clusters from `first`: the entry after the last must be
 * an end mark (a longer chain is a loop or a cross-link, a shorter one lost data).
 */
export async function exactChain(fat: FatTable, first: number, expected: number, owner: ChainOwner): Promise<ClusterRun[]> {
  const runs: ClusterRun[] = [];
  if (expected === 0) return runs;
  let cur = first;
  for (let i = 0; ; i++) {
    if (!fat.isCluster(cur)) fail(owner, `names cluster ${cur}, outside the data area (clusters 2..${fat.clusterCount + 1})`);
    push(runs, i, cur);
    const link = await fat.link(cur);
    if (i + 1 === expected) {
      if (link.kind === 'end') return runs;
      if (link.kind === 'next' && inRuns(runs, link.cluster)) fail(owner, `loops back to cluster ${link.cluster}`);
      fail(owner, `goes on past its ${expected} clusters (cluster ${cur} is not the end of the chain)`);
    }
    if (link.kind === 'end') fail(owner, `ends after ${i + 1} of its ${expected} clusters`);
    if (link.kind !== 'next') fail(owner, `reaches a ${link.kind} cluster after cluster ${cur}`);
    cur = link.cluster;
  }
}

/**
 * Follows a chain of unknown length (a FAT directory) to its end mark, at most `limit` clusters;
 * a cluster seen twice is a loop.
 */
export async function openChain(fat: FatTable, first: number, limit: number, owner: ChainOwner): Promise<ClusterRun[]> {
  const runs: ClusterRun[] = [];
  const seen = new Set<number>();
  let cur = first;
  for (let i = 0; ; i++) {
    if (!fat.isCluster(cur)) fail(owner, `names cluster ${cur}, outside the data area (clusters 2..${fat.clusterCount + 1})`);
    if (seen.has(cur)) fail(owner, `loops back to cluster ${cur}`);
    if (i >= limit) fail(owner, `is longer than ${limit} clusters`);
    seen.add(cur);
    push(runs, i, cur);
    const link = await fat.link(cur);
    if (link.kind === 'end') return runs;
    if (link.kind !== 'next') fail(owner, `reaches a ${link.kind} cluster after cluster ${cur}`);
    cur = link.cluster;
  }
}

/** A contiguous run (exFAT NoFatChain), checked against the data area. */
export function contiguousRun(fat: FatTable, first: number, count: number, owner: ChainOwner): ClusterRun[] {
  if (count === 0) return [];
  if (!fat.isCluster(first) || !fat.isCluster(first + count - 1)) {
    fail(owner, `(contiguous, clusters ${first}..${first + count - 1}) lies outside the data area (clusters 2..${fat.clusterCount + 1})`);
  }
  return [{ index: 0, cluster: first, count }];
}
