/** The exFAT reader behind the Filesystem contract. */
import type { FilesystemDriver } from '../filesystem.js';
import { looksLikeExfat } from './boot-region.js';
import { ExfatFilesystem } from './filesystem.js';

export { ExfatFilesystem } from './filesystem.js';

export const exfatDriver: FilesystemDriver = {
  type: 'exfat',
  async probe(src) {
    if (src.size < 512) return false;
    return looksLikeExfat(await src.readAt(0, 512));
  },
  open(src) {
    return ExfatFilesystem.open(src);
  },
};
