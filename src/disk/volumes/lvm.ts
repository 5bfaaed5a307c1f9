/**
 * LVM2 physical volumes and the logical volumes their metadata describes.
 *
 * A PV has a label (LABELONE, in one of its first four sectors) pointing at a PV header (its
 * UUID and the places of its metadata areas); a metadata area starts with a header whose
 * raw_locn points at the current metadata text inside a circular buffer. Both the header and the
 * text carry LVM's CRC. The text names the VG's PVs by UUID and, for each LV, segments that map
 * extents onto PVs. Linear and striped segments are assembled from slices of the PVs found in
 * this image; thin, RAID, mirror, cache, snapshot and VDO volumes are named with their type and
 * not opened. All units in the metadata are 512-byte sectors whatever the disk's sector size.
 */
import { FormatError, IntegrityError, LimitError } from '../../errors.js';
import { readExact, type ReadAt } from '../../io/read-at.js';
import { crc32 } from '../../util/crc32.js';
import { ConcatReadAt, SliceReadAt, StripedReadAt, type Extent } from '../block-source.js';
import { isSection, parseLvmText, type LvmSection, type LvmValue } from './lvm-text.js';
import { lvmLabelOffset, lvmUuid } from './signatures.js';

export const MAX_METADATA_BYTES = 16 * 1024 * 1024;
/** Most data/metadata area descriptors read from a PV header. */
const MAX_AREAS = 16;
const MAX_SEGMENTS = 65536;
const MDA_MAGIC = Buffer.from(' LVM2 x[5A%r0N*>', 'latin1');
const MDA_HEADER_SIZE = 512;
const LVM_INITIAL_CRC = 0xf597a6cf;
const SECTOR = 512;

/** LVM's CRC: CRC-32 without the usual pre- and post-inversion, seeded with 0xf597a6cf. */
export function lvmCrc(data: Uint8Array, initial = LVM_INITIAL_CRC): number {
  return ~crc32(data, ~initial >>> 0) >>> 0;
}

export interface PhysicalVolume {
  /** The PV's slice of the image (a partition, or the whole disk). */
  src: ReadAt;
  /** The volume path it was found on ("part/3", "raw"). */
  path: string;
  /** 32 characters, no dashes. */
  uuid: string;
  /** The newest metadata text of its first metadata area, parsed, with its sequence number. */
  vg: { name: string; id: string; seqno: number; meta: LvmSection } | undefined;
  /** Why the metadata could not be read, when it could not. */
  problem?: string;
}

const u64 = (b: Buffer, at: number): number => {
  const v = b.readBigUInt64LE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
};

/** Reads a PV's label, header and newest metadata. */
export async function readPhysicalVolume(src: ReadAt, path: string, head: Buffer): Promise<PhysicalVolume> {
  const labelAt = lvmLabelOffset(head);
  if (labelAt === undefined) throw new FormatError('no LVM2 label in the first four sectors', { file: src.name });
  const label = head.subarray(labelAt, labelAt + SECTOR);
  if (lvmCrc(label.subarray(20)) !== label.readUInt32LE(16)) {
    throw new IntegrityError('LVM2 label CRC mismatch', { file: src.name, offset: labelAt + 16 });
  }
  const hdr = labelAt + label.readUInt32LE(20);
  if (hdr + 40 > labelAt + SECTOR) throw new FormatError('LVM2 PV header lies outside its label sector', { file: src.name, offset: labelAt + 20 });
  const uuid = head.toString('latin1', hdr, hdr + 32);
  // Two lists of (offset, size) descriptors, each ended by a zero pair: data areas, then metadata areas.
  const areas: [number, number][][] = [[], []];
  let at = hdr + 40;
  for (const list of areas) {
    for (;;) {
      if (at + 16 > labelAt + SECTOR) throw new FormatError('LVM2 PV header area list runs past its sector', { file: src.name, offset: at });
      const off = u64(head, at);
      const size = u64(head, at + 8);
      at += 16;
      if (off === 0 && size === 0) break;
      if (list.length >= MAX_AREAS) throw new LimitError(`LVM2 PV header lists more than ${MAX_AREAS} areas`, { file: src.name, offset: at });
      list.push([off, size]);
    }
  }
  const pv: PhysicalVolume = { src, path, uuid, vg: undefined };
  const problems: string[] = [];
  for (const [off, size] of areas[1]!) {
    try {
      pv.vg = await readMetadataArea(src, off, size);
      if (pv.vg !== undefined) break;
    } catch (e) {
      problems.push(e instanceof Error ? e.message : String(e));
    }
  }
  if (pv.vg === undefined && problems.length > 0) pv.problem = problems.join('; ');
  return pv;
}

async function readMetadataArea(src: ReadAt, off: number, size: number): Promise<PhysicalVolume['vg']> {
  if (size < MDA_HEADER_SIZE || off + size > src.size) throw new FormatError(`LVM2 metadata area [${off}..${off + size}) lies outside the PV`, { file: src.name, offset: off });
  const h = await readExact(src, off, MDA_HEADER_SIZE, 'LVM2 metadata area header');
  if (!h.subarray(4, 20).equals(MDA_MAGIC)) throw new FormatError('LVM2 metadata area header has no magic', { file: src.name, offset: off + 4 });
  if (lvmCrc(h.subarray(4)) !== h.readUInt32LE(0)) throw new IntegrityError('LVM2 metadata area header CRC mismatch', { file: src.name, offset: off });
  const textOff = u64(h, 40);
  const textSize = u64(h, 48);
  const textCrc = h.readUInt32LE(56);
  if (textOff === 0 && textSize === 0) return undefined; // an empty area (a PV not in a VG)
  if (textSize > MAX_METADATA_BYTES) throw new LimitError(`LVM2 metadata of ${textSize} bytes (at most ${MAX_METADATA_BYTES})`, { file: src.name, offset: off + 48 });
  if (textOff < MDA_HEADER_SIZE || textOff >= size || textSize > size - MDA_HEADER_SIZE) {
    throw new FormatError(`LVM2 metadata text [${textOff}, +${textSize}) lies outside its area of ${size} bytes`, { file: src.name, offset: off + 40 });
  }
  // The area is a ring after its header: text running past the end continues right after it.
  const first = Math.min(textSize, size - textOff);
  const parts = [await readExact(src, off + textOff, first, 'LVM2 metadata')];
  if (first < textSize) parts.push(await readExact(src, off + MDA_HEADER_SIZE, textSize - first, 'LVM2 metadata'));
  const text = Buffer.concat(parts);
  if (lvmCrc(text) !== textCrc) throw new IntegrityError('LVM2 metadata text CRC mismatch', { file: src.name, offset: off + textOff });
  const nul = text.indexOf(0);
  const root = parseLvmText(text.toString('utf8', 0, nul < 0 ? text.length : nul), `${src.name} (LVM2 metadata)`);
  const name = Object.keys(root).find((k) => isSection(root[k]));
  if (name === undefined) throw new FormatError('LVM2 metadata names no volume group', { file: src.name, offset: off + textOff });
  const meta = root[name] as LvmSection;
  return { name, id: str(meta, 'id') ?? '', seqno: num(meta, 'seqno') ?? 0, meta };
}

const num = (s: LvmSection, k: string): number | undefined => (typeof s[k] === 'number' ? (s[k] as number) : undefined);
const str = (s: LvmSection, k: string): string | undefined => (typeof s[k] === 'string' ? (s[k] as string) : undefined);
const list = (s: LvmSection, k: string): (number | string)[] => (Array.isArray(s[k]) ? (s[k] as (number | string)[]) : []);
const sections = (v: LvmValue | undefined): [string, LvmSection][] =>
  isSection(v) ? Object.entries(v).filter((e): e is [string, LvmSection] => isSection(e[1])) : [];

export interface LogicalVolume {
  vg: string;
  name: string;
  uuid: string;
  size: number;
  /** "linear", "striped 2x64KiB", "thin", "raid1", ... */
  layout: string;
  /** Byte offset of its first extent on its first PV's volume. */
  firstOffset: number;
  /** First PV's volume path. */
  firstPv: string | undefined;
  source: ReadAt | undefined;
  reason?: string;
}

const KIB = 1024;
const fmtStripe = (bytes: number): string => (bytes % (1024 * KIB) === 0 ? `${bytes / (1024 * KIB)}MiB` : `${bytes / KIB}KiB`);

/** The logical volumes of every VG whose metadata the PVs carry (the newest copy of each VG). */
export function assembleLogicalVolumes(pvs: PhysicalVolume[], image: string): LogicalVolume[] {
  const newest = new Map<string, NonNullable<PhysicalVolume['vg']>>();
  for (const pv of pvs) {
    if (pv.vg === undefined) continue;
    const key = pv.vg.id || pv.vg.name;
    const known = newest.get(key);
    if (known === undefined || pv.vg.seqno > known.seqno) newest.set(key, pv.vg);
  }
  const byUuid = new Map(pvs.map((p) => [p.uuid, p]));
  const out: LogicalVolume[] = [];
  for (const vg of newest.values()) {
    const extentSectors = num(vg.meta, 'extent_size');
    const extentBytes = (extentSectors ?? 0) * SECTOR;
    const pvMap = new Map<string, { pv: PhysicalVolume | undefined; peStart: number; peCount: number; id: string }>();
    for (const [key, p] of sections(vg.meta['physical_volumes'])) {
      const id = (str(p, 'id') ?? '').replace(/-/g, '');
      pvMap.set(key, { pv: byUuid.get(id), peStart: (num(p, 'pe_start') ?? 0) * SECTOR, peCount: num(p, 'pe_count') ?? 0, id });
    }
    for (const [name, lv] of sections(vg.meta['logical_volumes'])) {
      if (!list(lv, 'status').includes('VISIBLE')) continue; // pool data/metadata, RAID legs, ...
      out.push(assembleLv(vg.name, name, lv, extentBytes, pvMap, image));
    }
  }
  return out;
}

function assembleLv(
  vgName: string,
  name: string,
  lv: LvmSection,
  extentBytes: number,
  pvMap: Map<string, { pv: PhysicalVolume | undefined; peStart: number; peCount: number; id: string }>,
  image: string,
): LogicalVolume {
  const where = `${image} (lvm/${vgName}/${name})`;
  const segs = sections(lv).filter(([k]) => /^segment[0-9]+$/.test(k)).map(([, s]) => s);
  const base: LogicalVolume = { vg: vgName, name, uuid: lvmUuid((str(lv, 'id') ?? '').replace(/-/g, '')), size: 0, layout: '', firstOffset: 0, firstPv: undefined, source: undefined };
  if (segs.length > MAX_SEGMENTS) return { ...base, reason: `more than ${MAX_SEGMENTS} segments` };
  segs.sort((a, b) => (num(a, 'start_extent') ?? 0) - (num(b, 'start_extent') ?? 0));
  const types = [...new Set(segs.map((s) => str(s, 'type') ?? '?'))];
  const extents: Extent[] = [];
  const layouts = new Set<string>();
  let nextExtent = 0;
  let reason: string | undefined;
  for (const seg of segs) {
    const type = str(seg, 'type') ?? '?';
    const start = num(seg, 'start_extent') ?? -1;
    const count = num(seg, 'extent_count') ?? 0;
    base.size += count * extentBytes;
    if (reason !== undefined) continue;
    if (type !== 'striped') {
      reason = `${type} volumes are not opened`;
      layouts.add(type);
      continue;
    }
    if (extentBytes <= 0) reason = 'extent_size is missing or zero';
    else if (start !== nextExtent) reason = `segment at extent ${start} does not follow the previous one (extent ${nextExtent})`;
    else if (count <= 0) reason = 'a segment with no extents';
    if (reason !== undefined) continue;
    nextExtent += count;
    const stripes = list(seg, 'stripes');
    const k = num(seg, 'stripe_count') ?? 0;
    if (k < 1 || stripes.length !== k * 2 || count % k !== 0) {
      reason = `segment at extent ${start}: ${k} stripes but ${stripes.length / 2} stripe entries`;
      continue;
    }
    const legs: ReadAt[] = [];
    for (let i = 0; i < k && reason === undefined; i++) {
      const pvName = stripes[2 * i];
      const pvExtent = stripes[2 * i + 1];
      const p = typeof pvName === 'string' ? pvMap.get(pvName) : undefined;
      if (p === undefined || typeof pvExtent !== 'number') reason = `segment at extent ${start} names an unknown PV ${JSON.stringify(pvName)}`;
      else if (p.pv === undefined) reason = `PV ${lvmUuid(p.id)} (${String(pvName)}) is not in this image`;
      else if (pvExtent < 0 || pvExtent + count / k > p.peCount) reason = `segment at extent ${start} reaches past the end of ${String(pvName)}`;
      else {
        const at = p.peStart + pvExtent * extentBytes;
        const bytes = (count / k) * extentBytes;
        if (extents.length === 0 && i === 0) [base.firstOffset, base.firstPv] = [at, p.pv.path];
        try {
          legs.push(new SliceReadAt(p.pv.src, at, bytes, k === 1 ? where : `${where} stripe ${i}`));
        } catch (e) {
          reason = e instanceof Error ? e.message : String(e);
        }
      }
    }
    if (reason !== undefined) continue;
    const bytes = count * extentBytes;
    if (k === 1) {
      layouts.add('linear');
      extents.push({ src: legs[0]!, offset: 0, length: bytes });
    } else {
      const stripeBytes = (num(seg, 'stripe_size') ?? 0) * SECTOR;
      if (stripeBytes <= 0 || (count / k) * extentBytes % stripeBytes !== 0) {
        reason = `segment at extent ${start}: stripe size ${stripeBytes} does not divide its extents`;
        continue;
      }
      layouts.add(`striped ${k}x${fmtStripe(stripeBytes)}`);
      extents.push({ src: new StripedReadAt(`${where} segment at extent ${start}`, legs, stripeBytes, bytes), offset: 0, length: bytes });
    }
  }
  base.layout = [...layouts].join(', ') || types.join(', ');
  if (segs.length === 0) reason = 'no segments';
  if (reason !== undefined) return { ...base, reason };
  const source = extents.length === 1 && extents[0]!.src instanceof SliceReadAt ? extents[0]!.src : new ConcatReadAt(where, extents);
  return { ...base, source };
}
