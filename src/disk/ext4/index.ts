/** The ext2/3/4 filesystem driver (detection by superblock magic and a sane geometry). */
import type { ReadAt } from '../../io/read-at.js';
import type { FilesystemDriver } from '../filesystem.js';
import { Ext4Filesystem } from './ext4-filesystem.js';
import { looksLikeSuperblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE } from './superblock.js';

export { Ext4Filesystem, type JournalStatus } from './ext4-filesystem.js';

export const ext4Driver: FilesystemDriver = {
  type: 'ext4',
  async probe(src: ReadAt): Promise<boolean> {
    if (src.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) return false;
    const raw = await src.readAt(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
    if (!looksLikeSuperblock(raw)) return false;
    const logBlock = raw.readUInt32LE(0x18);
    return logBlock <= 6 && raw.readUInt32LE(0x20) !== 0 && raw.readUInt32LE(0x28) !== 0;
  },
  open(src, opts) {
    return Ext4Filesystem.open(src, opts);
  },
};
