/**
 * jbd2 journal replay in memory (journal: 'apply'). The log is scanned the way recovery does it:
 * from s_start with s_sequence, descriptor blocks name the filesystem blocks whose new contents
 * follow, a commit block seals a transaction, revoke blocks cancel earlier copies; the trailing
 * transaction without a valid commit is discarded. The result is a map from filesystem block to
 * the journal copy that is its current contents; nothing is ever written.
 */
import { IntegrityError, UnsupportedError } from '../../errors.js';
import { crc32cUpdate } from './crc32c.js';
import type { BlockMapper } from './mapping.js';
import type { BlockVolume, OverlayBlock } from './volume.js';

export const JBD2_MAGIC = 0xc03b3998;
const BT_DESCRIPTOR = 1;
const BT_COMMIT = 2;
const BT_SB_V1 = 3;
const BT_SB_V2 = 4;
const BT_REVOKE = 5;

const INCOMPAT_REVOKE = 0x1;
const INCOMPAT_64BIT = 0x2;
const INCOMPAT_ASYNC_COMMIT = 0x4;
const INCOMPAT_CSUM_V2 = 0x8;
const INCOMPAT_CSUM_V3 = 0x10;
const INCOMPAT_FAST_COMMIT = 0x20;
const KNOWN_INCOMPAT = INCOMPAT_REVOKE | INCOMPAT_64BIT | INCOMPAT_ASYNC_COMMIT | INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3;

const FLAG_ESCAPE = 1;
const FLAG_SAME_UUID = 2;
const FLAG_LAST_TAG = 8;

export interface JournalReplay {
  /** Filesystem block -> where its replayed contents are. */
  overlay: Map<number, OverlayBlock>;
  /** Committed transactions found (first and last sequence numbers), if any. */
  transactions: number;
  firstSequence: number;
  lastSequence: number;
}

interface Tag {
  fsBlock: number;
  journalBlock: number;
  seq: number;
  escaped: boolean;
}

/**
 * Scans the journal held by the journal inode (its blocks reached through `mapper`) and returns
 * the in-memory overlay. `journalBlocks` is the inode's size in blocks.
 */
export async function replayJournal(vol: BlockVolume, mapper: BlockMapper, journalBlocks: number): Promise<JournalReplay> {
  const bs = vol.blockSize;
  const physical = async (lblk: number): Promise<number> => {
    const run = await mapper.map(lblk);
    if (run.pblk === undefined || run.unwritten) throw vol.error(`journal: block ${lblk} of the journal is not allocated`);
    return run.pblk;
  };
  const readJ = async (lblk: number): Promise<{ data: Buffer; pblk: number }> => {
    const pblk = await physical(lblk);
    return { data: await vol.block(pblk, `journal block ${lblk}`), pblk };
  };
  const { data: jsb, pblk: jsbBlock } = await readJ(0);
  const jsbOffset = jsbBlock * bs;
  if (jsb.readUInt32BE(0) !== JBD2_MAGIC) throw vol.error('journal superblock: bad magic', jsbOffset);
  const sbType = jsb.readUInt32BE(4);
  if (sbType !== BT_SB_V1 && sbType !== BT_SB_V2) throw vol.error(`journal superblock: unknown block type ${sbType}`, jsbOffset + 4);
  const jBlockSize = jsb.readUInt32BE(0xc);
  const maxLen = jsb.readUInt32BE(0x10);
  const first = jsb.readUInt32BE(0x14);
  const sequence = jsb.readUInt32BE(0x18);
  const start = jsb.readUInt32BE(0x1c);
  if (jBlockSize !== bs) throw vol.error(`journal superblock: block size ${jBlockSize} differs from the filesystem's ${bs}`, jsbOffset + 0xc);
  if (maxLen > journalBlocks || first < 1 || first >= maxLen) throw vol.error(`journal superblock: log bounds [${first}, ${maxLen}) do not fit a journal of ${journalBlocks} blocks`, jsbOffset + 0x10);
  const incompat = sbType === BT_SB_V2 ? jsb.readUInt32BE(0x28) : 0;
  const empty: JournalReplay = { overlay: new Map(), transactions: 0, firstSequence: sequence, lastSequence: sequence };
  if (start === 0) return empty;
  if ((incompat & ~KNOWN_INCOMPAT) !== 0) {
    const fc = (incompat & INCOMPAT_FAST_COMMIT) !== 0 ? ' (fast commit)' : '';
    throw new UnsupportedError(`ext4 journal uses features this reader cannot replay: 0x${(incompat & ~KNOWN_INCOMPAT).toString(16)}${fc}`, { file: vol.name, offset: jsbOffset + 0x28 });
  }
  if (start < first || start >= maxLen) throw vol.error(`journal superblock: log start ${start} lies outside [${first}, ${maxLen})`, jsbOffset + 0x1c);
  const csum3 = (incompat & INCOMPAT_CSUM_V3) !== 0;
  const csum2 = (incompat & INCOMPAT_CSUM_V2) !== 0;
  const csum = csum2 || csum3;
  const bit64 = (incompat & INCOMPAT_64BIT) !== 0;
  let seed = 0;
  if (csum) {
    const stored = jsb.readUInt32BE(0xfc);
    const copy = Buffer.from(jsb.subarray(0, 1024));
    copy.writeUInt32BE(0, 0xfc);
    const got = crc32cUpdate(0xffffffff, copy);
    if (stored !== got) throw new IntegrityError(`ext4 journal superblock checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${got.toString(16)})`, { file: vol.name, offset: jsbOffset + 0xfc });
    seed = crc32cUpdate(0xffffffff, jsb.subarray(0x30, 0x40));
  }
  const tagBytes = csum3 ? 16 : (csum2 ? 14 : 12) - (bit64 ? 0 : 4);
  const span = maxLen - first;
  const wrap = (b: number): number => first + ((b - first) % span);
  const blockCsum = (data: Buffer, at: number): number => {
    const copy = Buffer.from(data);
    copy.writeUInt32BE(0, at);
    return crc32cUpdate(seed, copy);
  };

  const committed: Tag[] = [];
  const revoked = new Map<number, number>();
  let pending: Tag[] = [];
  let pendingRevokes: [number, number][] = [];
  let seq = sequence;
  let pos = start;
  let transactions = 0;
  // Every block of the log is visited at most once per pass around it.
  for (let visited = 0; visited < span; ) {
    const { data, pblk } = await readJ(pos);
    const at = pblk * bs;
    if (data.readUInt32BE(0) !== JBD2_MAGIC || data.readUInt32BE(8) !== seq) break;
    const type = data.readUInt32BE(4);
    if (type === BT_DESCRIPTOR) {
      if (csum && blockCsum(data, bs - 4) !== data.readUInt32BE(bs - 4)) {
        throw new IntegrityError(`ext4 journal descriptor block of transaction ${seq} checksum mismatch`, { file: vol.name, offset: at + bs - 4 });
      }
      const end = bs - (csum ? 4 : 0);
      let p = 12;
      let n = 0;
      for (;;) {
        if (p + tagBytes > end) break;
        const lo = data.readUInt32BE(p);
        const flags = csum3 ? data.readUInt32BE(p + 4) : data.readUInt16BE(p + 6);
        const hi = bit64 ? data.readUInt32BE(p + 8) : 0;
        const tagCsum = csum3 ? data.readUInt32BE(p + 12) : data.readUInt16BE(p + 4);
        n++;
        const jblock = wrap(pos + n);
        const fsBlock = hi * 2 ** 32 + lo;
        vol.checkRange(fsBlock, 1, `journal tag of transaction ${seq}`);
        if (csum) {
          const { data: copy, pblk: cp } = await readJ(jblock);
          const s = Buffer.alloc(4);
          s.writeUInt32BE(seq >>> 0, 0);
          const c = crc32cUpdate(crc32cUpdate(seed, s), copy);
          if ((csum3 ? c : c & 0xffff) !== tagCsum) {
            throw new IntegrityError(`ext4 journal copy of block ${fsBlock} in transaction ${seq} checksum mismatch`, { file: vol.name, offset: cp * bs });
          }
        }
        pending.push({ fsBlock, journalBlock: jblock, seq, escaped: (flags & FLAG_ESCAPE) !== 0 });
        p += tagBytes + ((flags & FLAG_SAME_UUID) !== 0 ? 0 : 16);
        if ((flags & FLAG_LAST_TAG) !== 0) break;
      }
      pos = wrap(pos + 1 + n);
      visited += 1 + n;
    } else if (type === BT_COMMIT) {
      if (csum && blockCsum(data, 16) !== data.readUInt32BE(16)) break;
      committed.push(...pending);
      for (const [b, s] of pendingRevokes) revoked.set(b, Math.max(revoked.get(b) ?? s, s));
      pending = [];
      pendingRevokes = [];
      transactions++;
      seq = (seq + 1) >>> 0;
      pos = wrap(pos + 1);
      visited += 1;
    } else if (type === BT_REVOKE) {
      if (csum && blockCsum(data, bs - 4) !== data.readUInt32BE(bs - 4)) {
        throw new IntegrityError(`ext4 journal revoke block of transaction ${seq} checksum mismatch`, { file: vol.name, offset: at + bs - 4 });
      }
      const count = data.readUInt32BE(12);
      const rec = bit64 ? 8 : 4;
      if (count < 16 || count > bs - (csum ? 4 : 0)) throw vol.error(`journal revoke block of transaction ${seq}: record count ${count} out of range`, at + 12);
      for (let p = 16; p + rec <= count; p += rec) {
        const b = bit64 ? data.readUInt32BE(p) * 2 ** 32 + data.readUInt32BE(p + 4) : data.readUInt32BE(p);
        pendingRevokes.push([b, seq]);
      }
      pos = wrap(pos + 1);
      visited += 1;
    } else {
      break;
    }
  }
  const overlay = new Map<number, OverlayBlock>();
  for (const t of committed) {
    const r = revoked.get(t.fsBlock);
    if (r !== undefined && ((r - t.seq) | 0) >= 0) continue;
    overlay.set(t.fsBlock, { offset: (await physical(t.journalBlock)) * bs, escaped: t.escaped });
  }
  return { overlay, transactions, firstSequence: sequence, lastSequence: (seq - 1) >>> 0 };
}
