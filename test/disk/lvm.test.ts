/**
 * LVM2 volumes made by lvm2 itself (pvcreate, vgcreate, lvcreate --driverloaded n on loop devices
 * over the partitions of a GPT image; this kernel has no device-mapper): the test writes each
 * LV's data where `lvs --segments` says its extents are, and the volume layer must assemble
 * exactly those bytes, for linear, multi-segment and striped LVs, with VG names containing "-".
 * Types pbsfs does not open are named; damaged or hostile metadata gives typed errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, copyFileSync, openSync, readSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { dir, type DirectoryResult } from 'tmp-promise';
import { FileReadAt, type ReadAt } from '../../src/io/read-at.js';
import { scanDisk } from '../../src/disk/volumes/layout.js';
import { lvmCrc } from '../../src/disk/volumes/lvm.js';
import { parseLvmText } from '../../src/disk/volumes/lvm-text.js';
import { PbsfsError } from '../../src/errors.js';
import type { DiskLayout } from '../../src/disk/volumes/types.js';
import { detach, losetup, lvSegments, lvmEnv, sfdiskImage, sfdiskJson, sh, type LvSegment } from './disk-images.js';

const MiB = 1024 * 1024;
let tmp: DirectoryResult;
let img = '';
/** Each PV partition's byte offset in the image, by the loop device it was attached as. */
const partStart = new Map<string, number>();
let segments: LvSegment[] = [];
let extentBytes = 0;
let peStart = 0;
const lvData = new Map<string, Buffer>();
const VG = 'vg-data';

function pwrite(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}

function pread(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(length);
  readSync(fd, b, 0, length, offset);
  closeSync(fd);
  return b;
}

beforeAll(async () => {
  tmp = await dir({ unsafeCleanup: true });
  img = join(tmp.path, 'lvm.img');
  sfdiskImage(img, 96 * MiB, 'label: gpt\nsize=8MiB, type=linux\nsize=40MiB, type=lvm\nsize=40MiB, type=lvm\n');
  const parts = sfdiskJson(img).partitions;
  const env = lvmEnv(tmp.path);
  const devs: string[] = [];
  try {
    for (const p of parts.slice(1)) {
      const dev = losetup(img, p.start * 512, p.size * 512);
      devs.push(dev);
      partStart.set(dev, p.start * 512);
    }
    const [a, b] = devs as [string, string];
    const lvm = (...args: string[]): string => sh(args[0]!, args.slice(1), undefined, env);
    lvm('pvcreate', '-q', '-y', a, b);
    lvm('vgcreate', '-q', VG, a, b);
    lvm('lvcreate', '-q', '--driverloaded', 'n', '-an', '-Zn', '-L', '12M', '-n', 'root', VG, a);
    lvm('lvcreate', '-q', '--driverloaded', 'n', '-an', '-Zn', '-i2', '-I64k', '-L', '16M', '-n', 'stripe', VG);
    // Grown onto the other PV: two linear segments.
    lvm('lvcreate', '-q', '--driverloaded', 'n', '-an', '-Zn', '-L', '4M', '-n', 'my-home', VG, a);
    lvm('lvextend', '-q', '--driverloaded', 'n', '-L', '12M', `${VG}/my-home`, b);
    segments = lvSegments(VG, env);
    extentBytes = Number(lvm('vgs', '--noheadings', '--units', 'b', '--nosuffix', '-o', 'vg_extent_size', VG).trim());
    peStart = Number(lvm('pvs', '--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start', a).trim());
  } finally {
    for (const d of devs) detach(d);
  }
  // Each LV's data, written where lvm2 says its extents are.
  const sizes = new Map<string, number>();
  for (const s of segments) sizes.set(s.lv, Math.max(sizes.get(s.lv) ?? 0, (s.startExtent + s.extents) * extentBytes));
  for (const [lv, size] of sizes) lvData.set(lv, randomBytes(size));
  for (const s of segments) {
    const data = lvData.get(s.lv)!;
    const segStart = s.startExtent * extentBytes;
    const perLeg = (s.extents / s.stripes) * extentBytes;
    const unit = s.stripes === 1 ? perLeg : s.stripeBytes;
    for (let u = 0; u * unit < s.extents * extentBytes; u++) {
      const leg = s.legs[u % s.stripes]!;
      const row = Math.floor(u / s.stripes);
      pwrite(img, partStart.get(leg.dev)! + peStart + leg.pe * extentBytes + row * unit, data.subarray(segStart + u * unit, segStart + (u + 1) * unit));
    }
  }
});

afterAll(async () => {
  await tmp?.cleanup();
});

async function scan(path: string): Promise<{ layout: DiskLayout; close: () => Promise<void> }> {
  const src = await FileReadAt.open(path, 'lvm.img.fidx');
  return { layout: await scanDisk(src), close: () => src.close() };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function readAll(src: ReadAt): Promise<Buffer> {
  const parts: Buffer[] = [];
  // Odd-sized pieces so reads cross stripe and segment boundaries.
  for (let off = 0; off < src.size; off += 777_777) parts.push(Buffer.from(await src.readAt(off, Math.min(777_777, src.size - off))));
  return Buffer.concat(parts);
}

describe('LVM2 made by lvm2', () => {
  it('lists the VG\'s logical volumes as lvm/VG/LV with the layout lvm2 reports', async () => {
    const { layout, close } = await scan(img);
    await close();
    const lvs = layout.volumes.filter((v) => v.kind === 'lvm');
    expect(lvs.map((v) => [v.path, v.size]).sort()).toEqual([...lvData].map(([lv, d]) => [`lvm/${VG}/${lv}`, d.length]).sort());
    const stripe = segments.find((s) => s.lv === 'stripe')!;
    expect(lvs.find((v) => v.path.endsWith('/stripe'))?.lvmLayout).toBe(`striped ${stripe.stripes}x${stripe.stripeBytes / 1024}KiB`);
    expect(lvs.find((v) => v.path.endsWith('/root'))?.lvmLayout).toBe('linear');
    expect(segments.filter((s) => s.lv === 'my-home')).toHaveLength(2);
    for (const p of ['part/2', 'part/3']) {
      const v = layout.volumes.find((x) => x.path === p)!;
      expect(v.content?.type).toBe('LVM2_member');
      expect(v.reason).toBe(`LVM2 physical volume of VG ${VG} (its logical volumes are under lvm/)`);
    }
  });

  it('assembles each LV\'s bytes from the extents its metadata names (linear, two segments, striped)', async () => {
    const { layout, close } = await scan(img);
    try {
      for (const [lv, data] of lvData) {
        const v = layout.volumes.find((x) => x.path === `lvm/${VG}/${lv}`)!;
        expect(v.source, lv).toBeDefined();
        expect(sha(await readAll(v.source!)), lv).toBe(sha(data));
        // A read across the end is clipped, not padded.
        expect((await v.source!.readAt(data.length - 10, 100)).length).toBe(10);
      }
    } finally {
      await close();
    }
  });

  it('names an LV whose PV is missing from the image, and still lists the others', async () => {
    const copy = join(tmp.path, 'one-pv.img');
    copyFileSync(img, copy);
    const p3 = sfdiskJson(copy).partitions[2]!;
    pwrite(copy, p3.start * 512, Buffer.alloc(4096)); // part 3's PV label gone
    const { layout, close } = await scan(copy);
    await close();
    const stripe = layout.volumes.find((v) => v.path === `lvm/${VG}/stripe`)!;
    expect(stripe.source).toBeUndefined();
    expect(stripe.reason).toMatch(/^PV [A-Za-z0-9]{6}(-[A-Za-z0-9]{4}){5}-[A-Za-z0-9]{6} \(pv1\) is not in this image$/);
    expect(layout.volumes.find((v) => v.path === `lvm/${VG}/root`)!.source).toBeDefined();
  });

  describe('metadata rewritten in place (with valid CRCs)', () => {
    /** Replaces the metadata text of the PV on partition `n` of a copy of the image. */
    function rewrite(n: number, edit: (text: string) => string): string {
      const copy = join(tmp.path, `edit-${n}-${Math.random().toString(36).slice(2)}.img`);
      copyFileSync(img, copy);
      const start = sfdiskJson(copy).partitions[n - 1]!.start * 512;
      const label = pread(copy, start + 512, 512);
      expect(label.toString('latin1', 0, 8)).toBe('LABELONE');
      const hdr = label.readUInt32LE(20);
      // data areas, then metadata areas: take the first metadata area.
      let at = hdr + 40;
      while (label.readBigUInt64LE(at) !== 0n || label.readBigUInt64LE(at + 8) !== 0n) at += 16;
      at += 16;
      const mdaOff = Number(label.readBigUInt64LE(at));
      const mda = pread(copy, start + mdaOff, 512);
      const textOff = Number(mda.readBigUInt64LE(40));
      const textSize = Number(mda.readBigUInt64LE(48));
      const text = pread(copy, start + mdaOff + textOff, textSize).toString('utf8').replace(/\0+$/, '');
      const next = Buffer.from(edit(text));
      pwrite(copy, start + mdaOff + textOff, next);
      mda.writeBigUInt64LE(BigInt(next.length), 48);
      mda.writeUInt32LE(lvmCrc(next), 56);
      mda.writeUInt32LE(lvmCrc(mda.subarray(4)), 0);
      pwrite(copy, start + mdaOff, mda);
      return copy;
    }
    const newer = (t: string): string => t.replace(/seqno = (\d+)/, (_m, n: string) => `seqno = ${Number(n) + 100}`);

    it('names thin pools, thin volumes and RAID volumes by type without opening them', async () => {
      const extra =
        'pool {\nid = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"\nstatus = ["READ", "WRITE", "VISIBLE"]\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 1\ntype = "thin-pool"\nmetadata = "pool_tmeta"\npool = "pool_tdata"\n}\n}\n' +
        'thin1 {\nid = "bbbbbb-bbbb-bbbb-bbbb-bbbb-bbbb-bbbbbb"\nstatus = ["READ", "WRITE", "VISIBLE"]\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 4\ntype = "thin"\nthin_pool = "pool"\ndevice_id = 1\n}\n}\n' +
        'mirrored {\nid = "cccccc-cccc-cccc-cccc-cccc-cccc-cccccc"\nstatus = ["READ", "WRITE", "VISIBLE"]\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 1\ntype = "raid1"\ndevice_count = 2\n}\n}\n' +
        'hidden_tdata {\nid = "dddddd-dddd-dddd-dddd-dddd-dddd-dddddd"\nstatus = ["READ", "WRITE"]\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 1\ntype = "striped"\nstripe_count = 1\nstripes = ["pv0", 0]\n}\n}\n';
      const copy = rewrite(2, (t) => newer(t).replace('logical_volumes {\n', `logical_volumes {\n${extra}`));
      const { layout, close } = await scan(copy);
      await close();
      const by = (lv: string) => layout.volumes.find((v) => v.path === `lvm/${VG}/${lv}`);
      expect(by('pool')?.reason).toBe('thin-pool volumes are not opened');
      expect(by('thin1')?.reason).toBe('thin volumes are not opened');
      expect(by('thin1')?.lvmLayout).toBe('thin');
      expect(by('mirrored')?.reason).toBe('raid1 volumes are not opened');
      expect(by('hidden_tdata')).toBeUndefined();
      expect(by('root')?.source).toBeDefined();
    });

    it.each([
      ['a segment past the end of its PV', (t: string) => t.replace(/stripes = \[\s*"pv0", 0\s*\]/, 'stripes = [\n"pv0", 9999\n]'), /reaches past the end of pv0/],
      ['segments with a gap', (t: string) => t.replace(/start_extent = 0/, 'start_extent = 5'), /does not follow the previous one/],
      ['an unknown PV', (t: string) => t.replace(/stripes = \[\s*"pv0", 0\s*\]/, 'stripes = [\n"pv7", 0\n]'), /names an unknown PV "pv7"/],
    ])('an LV with %s is listed as unreadable with the reason', async (_what, edit, why) => {
      const copy = rewrite(2, (t) => edit(newer(t)));
      const { layout, close } = await scan(copy);
      await close();
      const bad = layout.volumes.filter((v) => v.kind === 'lvm' && v.source === undefined);
      expect(bad.length).toBeGreaterThan(0);
      expect(bad[0]!.reason).toMatch(why);
    });

    it('metadata that fails its CRC is reported on its PV, and the copy on the other PV is used', async () => {
      const copy = rewrite(2, newer);
      const start = sfdiskJson(copy).partitions[1]!.start * 512;
      // Flip a byte of the text, leaving its CRC stale.
      const mda = pread(copy, start + 4096, 512);
      expect(mda.toString('latin1', 4, 20)).toBe(' LVM2 x[5A%r0N*>');
      const at = start + 4096 + Number(mda.readBigUInt64LE(40)) + 20;
      pwrite(copy, at, Buffer.from([pread(copy, at, 1)[0]! ^ 0x20]));
      const { layout, close } = await scan(copy);
      await close();
      expect(layout.volumes.find((v) => v.path === 'part/2')?.reason).toMatch(/LVM2 metadata text CRC mismatch/);
      expect(layout.volumes.filter((v) => v.kind === 'lvm').map((v) => v.path).sort()).toEqual([...lvData.keys()].map((lv) => `lvm/${VG}/${lv}`).sort());
    });
  });
});

describe('LVM2 metadata text', () => {
  it('parses what lvm2 writes and refuses nesting deeper than 32 sections', () => {
    const ok = parseLvmText('vg {\nid = "x"\nseqno = 3\nstatus = ["READ", "WRITE"]\n# comment\nphysical_volumes {\npv0 {\npe_start = 2048\n}\n}\n}\ncontents = "Text Format Volume Group"\n', 'm');
    expect(ok['contents']).toBe('Text Format Volume Group');
    expect(JSON.stringify(ok['vg'])).toBe('{"id":"x","seqno":3,"status":["READ","WRITE"],"physical_volumes":{"pv0":{"pe_start":2048}}}');
    let deep = '';
    for (let i = 0; i < 40; i++) deep += `s${i} {\n`;
    expect(() => parseLvmText(deep, 'deep')).toThrow(PbsfsError);
    expect(() => parseLvmText('vg { id = "unterminated }', 'bad')).toThrow(/unterminated string/);
    expect(() => parseLvmText('vg { n = 99999999999999999999 }', 'big')).toThrow(/too large/);
  });
});
