/**
 * Disk images built at test time with the real tools (sfdisk, lvm2 through a loop device), and
 * what those tools report about them, for the volume-layer tests to compare against.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function sh(cmd: string, args: string[], input?: string, env?: NodeJS.ProcessEnv): string {
  return execFileSync(cmd, args, { encoding: 'utf8', ...(input !== undefined ? { input } : {}), stdio: ['pipe', 'pipe', 'pipe'], ...(env ? { env } : {}) });
}

/**
 * Runs `fn` on `path` as sfdisk sees a disk with `sectorSize`-byte logical sectors: the file
 * itself for 512, else a loop device with that sector size (this sfdisk has no --sector-size).
 */
function withSectorSize<T>(path: string, sectorSize: number, fn: (dev: string) => T): T {
  if (sectorSize === 512) return fn(path);
  const dev = sh('losetup', ['-f', '--show', '-b', String(sectorSize), path]).trim();
  try {
    return fn(dev);
  } finally {
    detach(dev);
  }
}

/** A sparse file of `bytes` with an sfdisk script applied. */
export function sfdiskImage(path: string, bytes: number, script: string, sectorSize = 512): void {
  sh('truncate', ['-s', String(bytes), path]);
  withSectorSize(path, sectorSize, (dev) => sh('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', dev], script));
}

export interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
}

export interface SfdiskTable {
  label: 'dos' | 'gpt';
  id: string;
  sectorsize: number;
  partitions: SfdiskPartition[];
}

export function sfdiskJson(path: string, sectorSize = 512): SfdiskTable {
  const out = withSectorSize(path, sectorSize, (dev) => sh('sfdisk', ['--json', dev]));
  return (JSON.parse(out) as { partitiontable: SfdiskTable }).partitiontable;
}

/** The partition number sfdisk gives a node ("disk.img5" -> 5). */
export const nodeNumber = (node: string): number => Number(/(\d+)$/.exec(node)![1]);

/** mmls (The Sleuth Kit) rows for partitions: start and length in sectors, description. */
export function mmlsPartitions(path: string, sectorSize = 512): { start: number; length: number; desc: string }[] {
  const out = sh('mmls', ['-b', String(sectorSize), path]);
  const rows: { start: number; length: number; desc: string }[] = [];
  for (const line of out.split('\n')) {
    const m = /^\d+:\s+(\d+(?::\d+)?)\s+(\d+)\s+(\d+)\s+(\d+)\s*(.*)$/.exec(line);
    if (m) rows.push({ start: Number(m[2]), length: Number(m[4]), desc: m[5]!.trim() });
  }
  return rows;
}

/** An LVM environment that keeps lvm2 away from the host's configuration and devices. */
export function lvmEnv(dir: string): NodeJS.ProcessEnv {
  const conf = join(dir, 'lvm-conf');
  mkdirSync(conf, { recursive: true });
  writeFileSync(
    join(conf, 'lvm.conf'),
    'devices { filter = [ "a|^/dev/loop|", "r|.*|" ] obtain_device_list_from_udev = 0 }\n' +
      'backup { backup = 0 archive = 0 }\nactivation { udev_sync = 0 udev_rules = 0 }\nglobal { locking_dir = "' + conf + '" }\n',
  );
  return { ...process.env, LVM_SYSTEM_DIR: conf, LVM_SUPPRESS_FD_WARNINGS: '1' };
}

/** Attaches [offset, offset + size) of `file` as a loop device; returns its path. */
export function losetup(file: string, offset: number, size: number): string {
  return sh('losetup', ['-f', '--show', '-o', String(offset), '--sizelimit', String(size), file]).trim();
}

export function detach(dev: string): void {
  spawnSync('losetup', ['-d', dev], { stdio: 'ignore' });
}

export interface LvSegment {
  lv: string;
  /** First extent of the segment within the LV. */
  startExtent: number;
  extents: number;
  stripes: number;
  stripeBytes: number;
  /** Per stripe: the loop device and its first physical extent. */
  legs: { dev: string; pe: number }[];
}

/** `lvs --segments` as lvm2 reports it. */
export function lvSegments(vg: string, env: NodeJS.ProcessEnv): LvSegment[] {
  const out = sh('lvs', ['--reportformat', 'json', '--segments', '--units', 'b', '--nosuffix', '-o', 'lv_name,seg_start_pe,seg_size_pe,stripes,stripe_size,seg_pe_ranges', vg], undefined, env);
  const rows = (JSON.parse(out) as { report: { seg: Record<string, string>[] }[] }).report[0]!.seg;
  return rows.map((r) => ({
    lv: r['lv_name']!,
    startExtent: Number(r['seg_start_pe']),
    extents: Number(r['seg_size_pe']),
    stripes: Number(r['stripes']),
    stripeBytes: Number(r['stripe_size']),
    legs: r['seg_pe_ranges']!.split(' ').map((s) => {
      const m = /^(.*):(\d+)-(\d+)$/.exec(s)!;
      return { dev: m[1]!, pe: Number(m[2]) };
    }),
  }));
}
