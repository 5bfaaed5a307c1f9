/**
 * Hardlink counts of a whole archive, from its item headers alone.
 *
 * A file's st_nlink is 1 + the number of HARDLINK entries pointing at it, and those can be
 * anywhere after it: only a pass over the whole stream can tell. This pass reads each item's
 * 16-byte header and skips its content (file contents, goodbye tables, attributes) by size; only
 * HARDLINK contents are read, so it takes a fraction of the time a full decode of every entry
 * does.
 *
 * Positions: a HARDLINK item follows its own FILENAME item, and its offset counts back from that
 * FILENAME to the target's FILENAME, whose position is the target's identity (its inode number is
 * that position + 2, see vfs/pxar-tree.ts).
 */
import { FormatError } from '../errors.js';
import type { ReadAt } from '../io/read-at.js';
import { HEADER_SIZE, MAX_CONTENT_SIZE, PXAR } from './format.js';

/** Bytes fetched per read (headers are small and dense in metadata). */
const WINDOW = 256 * 1024;

const FILENAME_LO = Number(PXAR.FILENAME & 0xffffffffn);
const FILENAME_HI = Number(PXAR.FILENAME >> 32n);
const HARDLINK_LO = Number(PXAR.HARDLINK & 0xffffffffn);
const HARDLINK_HI = Number(PXAR.HARDLINK >> 32n);

/**
 * Item types that may appear in a metadata stream, by their low 32 bits (distinct for every
 * type): the high word to match and the largest content size. Anything else means damage, and
 * the scan fails rather than count from garbage.
 */
const ITEM_TYPES = new Map<number, { hi: number; maxContent: number }>();
for (const [name, t] of Object.entries(PXAR)) {
  if (name === 'GOODBYE_TAIL_MARKER' || name === 'PAYLOAD_START_MARKER' || name === 'PAYLOAD_TAIL_MARKER') continue;
  const lo = Number(t & 0xffffffffn);
  if (ITEM_TYPES.has(lo)) throw new Error(`pxar item types share their low word: ${name}`);
  ITEM_TYPES.set(lo, { hi: Number(t >> 32n), maxContent: MAX_CONTENT_SIZE.get(t) ?? Number.MAX_SAFE_INTEGER });
}

/** Number of hardlinks per target FILENAME offset. Throws FormatError on a malformed stream. */
export async function scanHardlinkCounts(archive: ReadAt): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  const size = archive.size;
  let buf: Buffer = Buffer.alloc(0);
  let bufStart = 0;
  let pos = 0;
  let lastFilename = -1;
  const bad = (problem: string, at: number): FormatError => new FormatError(problem, { file: archive.name, offset: at });
  /** Makes [at, at + len) available in `buf`. */
  const need = async (at: number, len: number): Promise<void> => {
    if (at >= bufStart && at + len <= bufStart + buf.length) return;
    // Bytes the source holds in memory (harvested metadata) need no read.
    buf = archive.readSome?.(at, len, WINDOW) ?? (await archive.readAt(at, Math.max(len, WINDOW)));
    bufStart = at;
    if (buf.length < len) throw bad(`stream ends inside an item (wanted ${len} bytes)`, at);
  };
  while (pos < size) {
    // Awaited only when the window must move: an await per item (600k in a 100k-entry archive)
    // allocated a promise and a resumption each, ~130 MB of garbage per scan.
    if (pos < bufStart || pos + HEADER_SIZE > bufStart + buf.length) await need(pos, HEADER_SIZE);
    const o = pos - bufStart;
    const lo = buf.readUInt32LE(o);
    const hi = buf.readUInt32LE(o + 4);
    const itemSize = buf.readUInt32LE(o + 8) + buf.readUInt32LE(o + 12) * 0x100000000;
    if (itemSize < HEADER_SIZE || itemSize > size - pos) throw bad(`item size ${itemSize} does not fit the stream`, pos);
    const type = ITEM_TYPES.get(lo);
    if (type === undefined || type.hi !== hi) throw bad('unknown item type', pos);
    if (itemSize - HEADER_SIZE > type.maxContent) throw bad(`item of ${itemSize} bytes is larger than its type allows`, pos);
    if (lo === FILENAME_LO && hi === FILENAME_HI) {
      lastFilename = pos;
    } else if (lo === HARDLINK_LO && hi === HARDLINK_HI) {
      if (itemSize < HEADER_SIZE + 8) throw bad('HARDLINK item is too short', pos);
      if (pos + HEADER_SIZE + 8 > bufStart + buf.length) await need(pos, HEADER_SIZE + 8);
      const c = pos - bufStart + HEADER_SIZE;
      const offset = buf.readUInt32LE(c) + buf.readUInt32LE(c + 4) * 0x100000000;
      if (lastFilename < 0 || offset <= 0 || offset > lastFilename) throw bad(`hardlink offset ${offset} points outside the archive`, pos);
      const target = lastFilename - offset;
      counts.set(target, (counts.get(target) ?? 0) + 1);
    }
    pos += itemSize;
  }
  return counts;
}
