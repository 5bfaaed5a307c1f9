/**
 * The filesystem readers pbsfs has, and the choice among them by superblock: each driver's probe
 * looks at a few KiB for its own magic, so detection never means trying to open the volume with
 * every reader in turn.
 */
import type { ReadAt } from '../io/read-at.js';
import { exfatDriver } from './exfat/index.js';
import { ext4Driver } from './ext4/index.js';
import { fatDriver } from './fat/index.js';
import type { Filesystem, FilesystemDriver, FilesystemOpenOptions } from './filesystem.js';

/** Every reader, in probe order. */
export const FILESYSTEM_DRIVERS: FilesystemDriver[] = [ext4Driver, exfatDriver, fatDriver];

/** The driver whose superblock `src` starts with, if any. */
export async function findDriver(src: ReadAt, drivers: readonly FilesystemDriver[] = FILESYSTEM_DRIVERS): Promise<FilesystemDriver | undefined> {
  for (const d of drivers) {
    if (await d.probe(src)) return d;
  }
  return undefined;
}

/** Whether a reader exists for a blkid type name ("ext4", "vfat", ...). */
export function driverForType(type: string, drivers: readonly FilesystemDriver[] = FILESYSTEM_DRIVERS): FilesystemDriver | undefined {
  return drivers.find((d) => d.type === type || (d.type === 'ext4' && (type === 'ext2' || type === 'ext3')));
}

export async function openFilesystem(src: ReadAt, driver: FilesystemDriver, opts?: FilesystemOpenOptions): Promise<Filesystem> {
  return driver.open(src, opts);
}
