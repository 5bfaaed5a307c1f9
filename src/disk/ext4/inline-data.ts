/**
 * inline_data: small files and directories kept in the inode itself, the first 60 bytes in
 * i_block and the rest in the in-inode "system.data" xattr.
 */
import type { Inode } from './inode.js';
import { I_BLOCK_SIZE } from './inode.js';
import type { Superblock } from './superblock.js';
import type { BlockVolume } from './volume.js';
import { INDEX_SYSTEM, inodeXattrs } from './xattrs.js';

/** The continuation in system.data (may be empty). */
export function inlineTail(sb: Superblock, vol: BlockVolume, inode: Inode): Buffer {
  for (const x of inodeXattrs(sb, inode, vol)) {
    if (x.index === INDEX_SYSTEM && x.suffix.toString('latin1') === 'data') {
      if (x.value === undefined) throw vol.error(`inode ${inode.ino}: inline data kept outside the inode`, inode.offset);
      return x.value;
    }
  }
  return Buffer.alloc(0);
}

/** The whole inline content of a file or symlink, `inode.size` bytes. */
export function inlineContent(sb: Superblock, vol: BlockVolume, inode: Inode): Buffer {
  const all = Buffer.concat([inode.iBlock, inlineTail(sb, vol, inode)]);
  if (inode.size > all.length) throw vol.error(`inode ${inode.ino}: inline file of ${inode.size} bytes holds only ${all.length}`, inode.offset);
  return all.subarray(0, inode.size);
}

export { I_BLOCK_SIZE };
