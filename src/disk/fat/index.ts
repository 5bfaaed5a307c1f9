/** The FAT12/16/32 reader (with VFAT long names) behind the Filesystem contract. */
import type { FilesystemDriver } from '../filesystem.js';
import { looksLikeFat } from './boot-sector.js';
import { FatFilesystem } from './filesystem.js';

export { FatFilesystem } from './filesystem.js';

export const fatDriver: FilesystemDriver = {
  type: 'vfat',
  async probe(src) {
    if (src.size < 512) return false;
    return looksLikeFat(await src.readAt(0, 512));
  },
  open(src) {
    return FatFilesystem.open(src);
  },
};
