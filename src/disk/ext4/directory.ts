/**
 * Directories: linear entry blocks (with the metadata_csum tail), htree index blocks (lookup by
 * name hash, with the dx tail checksum), and the inline-data directory layout. Entries come back
 * in on-disk order without "." and "..".
 */
import { IntegrityError } from '../../errors.js';
import { crc32cUpdate } from './crc32c.js';
import { dirHash } from './dir-hash.js';
import type { BlockVolume } from './volume.js';

export interface RawDirEntry {
  ino: number;
  name: Buffer;
  /** The file type byte (1 regular, 2 directory, 7 symlink, ...), 0 when unknown. */
  fileType: number;
}

/** A directory block's bytes with where they are (error messages). */
export interface DirBlock {
  data: Buffer;
  /** Byte offset on the volume. */
  offset: number;
}

export const FT_DIR = 2;
const TAIL_SIZE = 12;
const TAIL_FILE_TYPE = 0xde;

export interface DirContext {
  vol: BlockVolume;
  ino: number;
  blockSize: number;
  hasFileType: boolean;
  metadataCsum: boolean;
  /** The directory inode's checksum seed. */
  csumSeed: number;
}

function recLen(raw: number, blockSize: number): number {
  if (blockSize < 65536) return raw;
  return raw === 65535 || raw === 0 ? blockSize : (raw & 65532) | ((raw & 3) << 16);
}

/** True when `data` starts with the empty entry that begins an htree interior node. */
export function isDxNode(data: Buffer, blockSize: number): boolean {
  return data.readUInt32LE(0) === 0 && recLen(data.readUInt16LE(4), blockSize) === blockSize && data[6] === 0;
}

/** Verifies a leaf block's checksum tail; returns the length of the entry area. */
export function verifyLeaf(ctx: DirContext, blk: DirBlock): number {
  const bs = ctx.blockSize;
  const d = blk.data;
  if (!ctx.metadataCsum) return bs;
  const t = bs - TAIL_SIZE;
  if (d.readUInt32LE(t) !== 0 || d.readUInt16LE(t + 4) !== TAIL_SIZE || d[t + 6] !== 0 || d[t + 7] !== TAIL_FILE_TYPE) {
    throw ctx.vol.error(`directory inode ${ctx.ino}: block has no checksum tail`, blk.offset + t);
  }
  const stored = d.readUInt32LE(t + 8);
  const got = crc32cUpdate(ctx.csumSeed, d.subarray(0, t));
  if (stored !== got) {
    throw new IntegrityError(`ext4 directory inode ${ctx.ino}: block checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${got.toString(16)})`, {
      file: ctx.vol.name,
      offset: blk.offset + t + 8,
    });
  }
  return t;
}

/**
 * Parses the entries of [start, end) of `data` (a directory block, or an inline-data area).
 * Deleted entries (inode 0), "." and ".." and the checksum tail are skipped.
 */
export function parseEntries(ctx: DirContext, data: Buffer, start: number, end: number, offset: number, out: RawDirEntry[]): void {
  let p = start;
  while (p < end) {
    if (p + 8 > end) throw ctx.vol.error(`directory inode ${ctx.ino}: entry header runs past the block`, offset + p);
    const ino = data.readUInt32LE(p);
    const rl = recLen(data.readUInt16LE(p + 4), ctx.blockSize);
    const nameLen = ctx.hasFileType ? data[p + 6]! : data.readUInt16LE(p + 6);
    const ft = ctx.hasFileType ? data[p + 7]! : 0;
    if (rl < 8 || rl % 4 !== 0 || p + rl > end || 8 + nameLen > rl) {
      throw ctx.vol.error(`directory inode ${ctx.ino}: bad entry (record length ${rl}, name length ${nameLen})`, offset + p);
    }
    if (ino !== 0) {
      const name = data.subarray(p + 8, p + 8 + nameLen);
      const dot = (nameLen === 1 && name[0] === 0x2e) || (nameLen === 2 && name[0] === 0x2e && name[1] === 0x2e);
      if (!dot) {
        if (nameLen === 0) throw ctx.vol.error(`directory inode ${ctx.ino}: entry with an empty name`, offset + p);
        out.push({ ino, name: Buffer.from(name), fileType: ft });
      }
    }
    p += rl;
  }
}

/** Entries of one leaf block (checksum verified). */
export function leafEntries(ctx: DirContext, blk: DirBlock, out: RawDirEntry[]): void {
  const end = verifyLeaf(ctx, blk);
  parseEntries(ctx, blk.data, 0, end, blk.offset, out);
}

/** Finds `name` in one leaf block (checksum verified). */
export function findInLeaf(ctx: DirContext, blk: DirBlock, name: Buffer): number | undefined {
  const found: RawDirEntry[] = [];
  leafEntries(ctx, blk, found);
  for (const e of found) if (e.name.equals(name)) return e.ino;
  return undefined;
}

interface DxLevel {
  data: Buffer;
  offset: number;
  countOff: number;
  count: number;
  at: number;
}

/** Thrown inside the htree walk: the index is not usable, so the caller falls back to a linear scan. */
export class BadHtree extends Error {}

export interface HtreeParams {
  hashSeed: readonly number[];
  hashUnsignedOffset: number;
  largeDir: boolean;
  /** Directory blocks (size / block size): every index pointer must stay below. */
  dirBlocks: number;
}

/**
 * Looks `name` up through the htree index. Returns the inode, undefined when the name is not
 * there, or throws BadHtree when the index cannot be used (unknown hash, damaged node).
 */
export async function htreeLookup(ctx: DirContext, p: HtreeParams, readBlock: (lblk: number) => Promise<DirBlock>, name: Buffer): Promise<number | undefined> {
  const root = await readBlock(0);
  const d = root.data;
  const infoLen = d[0x1d]!;
  const levels = d[0x1e]!;
  if (d.readUInt32LE(0x18) !== 0 || infoLen !== 8) throw new BadHtree('bad dx root');
  const maxLevels = p.largeDir ? 3 : 2;
  if (levels >= maxLevels) throw new BadHtree('too many htree levels');
  let version = d[0x1c]!;
  if (version <= 2) version += p.hashUnsignedOffset;
  const hash = dirHash(name, version, p.hashSeed);
  if (hash === undefined) throw new BadHtree('unknown hash');
  const path: DxLevel[] = [];
  let node: DirBlock = root;
  let countOff = 0x18 + infoLen;
  for (let level = 0; ; level++) {
    const lv = dxLevel(ctx, node, countOff, hash);
    path.push(lv);
    const blk = dxBlock(lv.data, lv.countOff, lv.at);
    if (blk >= p.dirBlocks) throw new BadHtree('index points past the directory');
    if (level === levels) break;
    node = await readBlock(blk);
    if (!isDxNode(node.data, ctx.blockSize)) throw new BadHtree('interior node without its empty entry');
    countOff = 8;
  }
  // Scan the leaf, then following leaves while their hash continues ours (collisions).
  for (let scanned = 0; scanned <= p.dirBlocks; scanned++) {
    const leaf = path[path.length - 1]!;
    const found = findInLeaf(ctx, await readBlock(dxBlock(leaf.data, leaf.countOff, leaf.at)), name);
    if (found !== undefined) return found;
    // Advance to the next leaf pointer.
    let i = path.length - 1;
    while (i >= 0 && path[i]!.at + 1 >= path[i]!.count) i--;
    if (i < 0) return undefined;
    const lv = path[i]!;
    lv.at++;
    const nextHash = lv.data.readUInt32LE(lv.countOff + lv.at * 8);
    if ((nextHash & ~1) >>> 0 !== hash) return undefined;
    for (let j = i + 1; j < path.length; j++) {
      const parent = path[j - 1]!;
      const blk = dxBlock(parent.data, parent.countOff, parent.at);
      if (blk >= p.dirBlocks) throw new BadHtree('index points past the directory');
      const n = await readBlock(blk);
      if (!isDxNode(n.data, ctx.blockSize)) throw new BadHtree('interior node without its empty entry');
      const sub = dxLevel(ctx, n, 8, undefined);
      path[j] = sub;
    }
  }
  throw new BadHtree('collision chain longer than the directory');
}

function dxBlock(data: Buffer, countOff: number, at: number): number {
  return data.readUInt32LE(countOff + at * 8 + 4) & 0x0fffffff;
}

/** Validates one index node (limit, count, checksum) and picks the entry for `hash`. */
function dxLevel(ctx: DirContext, node: DirBlock, countOff: number, hash: number | undefined): DxLevel {
  const d = node.data;
  const limit = d.readUInt16LE(countOff);
  const count = d.readUInt16LE(countOff + 2);
  const tailBytes = ctx.metadataCsum ? 8 : 0;
  const want = Math.floor((ctx.blockSize - countOff - tailBytes) / 8);
  if (limit !== want || count === 0 || count > limit) throw new BadHtree('bad dx count/limit');
  if (ctx.metadataCsum) {
    const tail = countOff + limit * 8;
    let c = crc32cUpdate(ctx.csumSeed, d.subarray(0, countOff + count * 8));
    c = crc32cUpdate(c, d.subarray(tail, tail + 4));
    c = crc32cUpdate(c, ZERO4);
    const stored = d.readUInt32LE(tail + 4);
    if (stored !== c) {
      throw new IntegrityError(`ext4 directory inode ${ctx.ino}: htree node checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${c.toString(16)})`, {
        file: ctx.vol.name,
        offset: node.offset + tail + 4,
      });
    }
  }
  let at = 0;
  if (hash !== undefined) {
    let lo = 1;
    let hi = count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (d.readUInt32LE(countOff + mid * 8) > hash) hi = mid - 1;
      else lo = mid + 1;
    }
    at = lo - 1;
  }
  return { data: d, offset: node.offset, countOff, count, at };
}

const ZERO4 = Buffer.alloc(4);
