/**
 * The volume layer against the tools that made the images: partition tables written by sfdisk
 * (MBR with logical partitions, GPT with 512 and 4096-byte sectors) must come out as sfdisk and
 * The Sleuth Kit's mmls report them; a damaged GPT falls back to its backup; hostile chains and
 * tables fail with typed errors naming the image and offset.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { dir, type DirectoryResult } from 'tmp-promise';
import { BufferReadAt, FileReadAt } from '../../src/io/read-at.js';
import { scanDisk } from '../../src/disk/volumes/layout.js';
import { readMbr } from '../../src/disk/volumes/mbr.js';
import { readGpt } from '../../src/disk/volumes/gpt.js';
import { PbsfsError } from '../../src/errors.js';
import type { DiskLayout } from '../../src/disk/volumes/types.js';
import { mmlsPartitions, nodeNumber, sfdiskImage, sfdiskJson } from './disk-images.js';

let tmp: DirectoryResult;
beforeAll(async () => {
  tmp = await dir({ unsafeCleanup: true });
});
afterAll(async () => {
  await tmp.cleanup();
});

const MiB = 1024 * 1024;

async function scanFile(path: string): Promise<DiskLayout> {
  const src = await FileReadAt.open(path, 'disk.img.fidx');
  try {
    return await scanDisk(src);
  } finally {
    await src.close();
  }
}

function patch(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

async function errorOf(p: Promise<unknown>): Promise<PbsfsError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PbsfsError);
    return e as PbsfsError;
  }
  throw new Error('expected a failure');
}

describe('MBR', () => {
  it('primary, extended and logical partitions come out as sfdisk and mmls report them', async () => {
    const img = join(tmp.path, 'mbr.img');
    sfdiskImage(
      img,
      64 * MiB,
      'label: dos\nstart=2048, size=8192, type=83\nstart=10240, size=8192, type=8e\nstart=20480, type=5\nstart=22528, size=4096, type=83\nstart=28672, size=4096, type=82\nstart=34816, size=2048, type=c\n',
    );
    const table = sfdiskJson(img);
    const layout = await scanFile(img);
    expect(layout.table).toBe('mbr');
    expect(layout.diskId).toBe(table.id);
    const got = layout.volumes.map((v) => ({ n: Number(v.path.slice(5)), start: v.offset / 512, size: v.size / 512, type: v.typeId }));
    const want = table.partitions.map((p) => ({ n: nodeNumber(p.node), start: p.start, size: p.size, type: `0x${p.type.padStart(2, '0')}` }));
    // The extended partition: sfdisk reports its full extent; so do we.
    expect(got).toEqual(want);
    expect(layout.volumes.map((v) => v.mbrRole)).toEqual(['primary', 'primary', 'extended', 'logical', 'logical', 'logical']);
    // mmls lists every data partition (not the extended container) at the same sectors.
    const mm = mmlsPartitions(img).filter((r) => !/Extended|Table|Unallocated/.test(r.desc));
    const data = layout.volumes.filter((v) => v.mbrRole !== 'extended');
    expect(data.map((v) => [v.offset / 512, v.size / 512])).toEqual(mm.map((r) => [r.start, r.length]));
    expect(layout.volumes.find((v) => v.path === 'part/3')?.reason).toMatch(/extended partition/);
    expect(layout.volumes.every((v) => !v.readable)).toBe(true);
  });

  it('refuses an extended-partition chain that loops back (names the image, the EBR and its offset)', async () => {
    const img = join(tmp.path, 'mbr-loop.img');
    sfdiskImage(img, 32 * MiB, 'label: dos\nstart=2048, type=5\nstart=4096, size=2048, type=83\nstart=8192, size=2048, type=83\n');
    // The second EBR (sector 6144, before partition 6) links back to the first (relative 0).
    const ebr2 = 6144 * 512;
    const raw = readFileSync(img);
    expect(raw[ebr2 + 510]).toBe(0x55);
    const link = Buffer.alloc(16);
    link[4] = 0x05;
    link.writeUInt32LE(0, 8);
    link.writeUInt32LE(2048, 12);
    patch(img, ebr2 + 446 + 16, link);
    const src = await FileReadAt.open(img, 'loop.img.fidx');
    const e = await errorOf(readMbr(src));
    await src.close();
    expect(e.kind).toBe('format');
    expect(e.message).toMatch(/^loop\.img\.fidx \(MBR\) at offset 1048576: extended partition chain loops back to the EBR at sector 2048/);
  });

  it('refuses a chain longer than 256 links without reading past it', async () => {
    // Every EBR links to the next sector: 300 links in a 1 MiB extended partition.
    const disk = Buffer.alloc(2 * MiB);
    const put = (sector: number, slot: number, type: number, start: number, size: number): void => {
      const at = sector * 512 + 446 + slot * 16;
      disk[at + 4] = type;
      disk.writeUInt32LE(start, at + 8);
      disk.writeUInt32LE(size, at + 12);
      disk[sector * 512 + 510] = 0x55;
      disk[sector * 512 + 511] = 0xaa;
    };
    put(0, 0, 0x05, 1, 3000);
    for (let i = 0; i < 300; i++) put(1 + i, 1, 0x05, i + 1, 1);
    const e = await errorOf(readMbr(new BufferReadAt('chain.img.fidx', disk)));
    expect(e.kind).toBe('limit');
    expect(e.message).toMatch(/longer than 256 links/);
  });

  it('marks a partition that reaches past the end of the image as truncated, not readable', async () => {
    const img = join(tmp.path, 'mbr-trunc.img');
    sfdiskImage(img, 16 * MiB, 'label: dos\nstart=2048, size=16384, type=83\n');
    // Shrink the image under the table.
    const { truncateSync } = await import('node:fs');
    truncateSync(img, 6 * MiB);
    const layout = await scanFile(img);
    const v = layout.volumes[0]!;
    expect(v.path).toBe('part/1');
    expect(v.size).toBe(6 * MiB - 2048 * 512);
    expect(v.readable).toBe(false);
    expect(v.reason).toBe(`the volume extends ${8 * MiB - (6 * MiB - 1 * MiB)} bytes past the end of the image`);
  });
});

describe('GPT', () => {
  it.each([512, 4096])('partitions with %i-byte sectors come out as sfdisk and mmls report them', async (ss) => {
    const img = join(tmp.path, `gpt-${ss}.img`);
    sfdiskImage(img, 64 * MiB, 'label: gpt\nsize=1MiB, type=uefi, name="EFI system"\nsize=20MiB, type=linux, name="root fs"\nsize=10MiB, type=lvm\nsize=4MiB, type=swap\n', ss);
    const table = sfdiskJson(img, ss);
    const layout = await scanFile(img);
    expect(layout.table).toBe('gpt');
    expect(layout.sectorSize).toBe(ss);
    expect(layout.diskId).toBe(table.id.toLowerCase());
    expect(layout.warnings).toEqual([]);
    expect(
      layout.volumes.map((v) => ({ n: Number(v.path.slice(5)), start: v.offset / ss, size: v.size / ss, type: v.typeId, uuid: v.partUuid, name: v.partName })),
    ).toEqual(
      table.partitions.map((p) => ({
        n: nodeNumber(p.node),
        start: p.start,
        size: p.size,
        type: p.type.toLowerCase(),
        uuid: p.uuid!.toLowerCase(),
        name: p.name,
      })),
    );
    expect(layout.volumes.map((v) => v.typeName)).toEqual(['EFI System', 'Linux filesystem', 'Linux LVM', 'Linux swap']);
    const mm = mmlsPartitions(img, ss).filter((r) => !/Table|Unallocated|Safety|GPT Header|Partition Table/.test(r.desc));
    expect(layout.volumes.map((v) => [v.offset / ss, v.size / ss])).toEqual(mm.map((r) => [r.start, r.length]));
  });

  it.each([
    ['header CRC', (ss: number) => ({ at: ss + 16, bytes: Buffer.from([0xde, 0xad]) }), /header CRC mismatch at LBA 1/],
    ['signature', (ss: number) => ({ at: ss, bytes: Buffer.from('XXXXXXXX') }), /no "EFI PART" signature at LBA 1/],
    ['entry array', (ss: number) => ({ at: 2 * ss + 40, bytes: Buffer.from([1, 2, 3]) }), /entry array CRC mismatch/],
  ])('a main GPT with a damaged %s is replaced by the backup (same partitions, a warning)', async (_what, damage, why) => {
    for (const ss of [512, 4096]) {
      const img = join(tmp.path, `gpt-damaged-${ss}.img`);
      sfdiskImage(img, 32 * MiB, 'label: gpt\nsize=4MiB, type=linux\nsize=8MiB, type=linux\n', ss);
      const good = await scanFile(img);
      const d = damage(ss);
      patch(img, d.at, d.bytes);
      const layout = await scanFile(img);
      expect(layout.table).toBe('gpt');
      expect(layout.sectorSize).toBe(ss);
      expect(layout.volumes.map((v) => [v.path, v.offset, v.size, v.partUuid])).toEqual(good.volumes.map((v) => [v.path, v.offset, v.size, v.partUuid]));
      expect(layout.warnings).toHaveLength(1);
      expect(layout.warnings[0]).toMatch(why);
      expect(layout.warnings[0]).toMatch(/the backup at LBA \d+ is used/);
    }
  });

  it('fails with an integrity error when the main and the backup GPT are both damaged', async () => {
    const img = join(tmp.path, 'gpt-both.img');
    sfdiskImage(img, 16 * MiB, 'label: gpt\nsize=4MiB, type=linux\n');
    patch(img, 512 + 16, Buffer.from([1]));
    patch(img, 16 * MiB - 512 + 16, Buffer.from([1]));
    const src = await FileReadAt.open(img, 'both.img.fidx');
    const e = await errorOf(readGpt(src, 512));
    await src.close();
    expect(e.kind).toBe('integrity');
    expect(e.message).toMatch(/^both\.img\.fidx \(GPT\) at offset 512: GPT main copy is damaged \(header CRC mismatch at LBA 1\) and so is the backup \(header CRC mismatch at LBA 32767\)/);
  });

  it('refuses an entry array larger than 1 MiB before reading it', async () => {
    const img = join(tmp.path, 'gpt-huge.img');
    sfdiskImage(img, 16 * MiB, 'label: gpt\nsize=4MiB, type=linux\n');
    const hdr = readFileSync(img).subarray(512, 1024);
    const h = Buffer.from(hdr);
    h.writeUInt32LE(0x100000, 80); // a million entries
    h.writeUInt32LE(0, 16);
    const { crc32 } = await import('../../src/util/crc32.js');
    h.writeUInt32LE(crc32(h.subarray(0, h.readUInt32LE(12))) >>> 0, 16);
    patch(img, 512, h);
    const src = await FileReadAt.open(img, 'huge.img.fidx');
    const e = await errorOf(readGpt(src, 512));
    await src.close();
    expect(e.kind).toBe('limit');
  });
});

describe('a filesystem on the whole disk', () => {
  it('is the volume "raw", named by its superblock with label and UUID as blkid reports them', async () => {
    const { execFileSync } = await import('node:child_process');
    const img = join(tmp.path, 'raw-ext4.img');
    execFileSync('truncate', ['-s', '8M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'rootfs', img]);
    const blkid = (tag: string): string => execFileSync('blkid', ['-p', '-o', 'value', '-s', tag, img], { encoding: 'utf8' }).trim();
    const layout = await scanFile(img);
    expect(layout.table).toBe('none');
    expect(layout.volumes).toHaveLength(1);
    const v = layout.volumes[0]!;
    expect([v.path, v.offset, v.size]).toEqual(['raw', 0, 8 * MiB]);
    expect(v.content).toEqual({ type: blkid('TYPE'), label: blkid('LABEL'), uuid: blkid('UUID'), filesystem: true });
  });

  it.each([
    ['vfat', ['mkfs.vfat', '-n', 'BOOTPART']],
    ['exfat', ['mkfs.exfat', '-L', 'data']],
    ['ext2', ['mkfs.ext2', '-q', '-F']],
    ['ext3', ['mkfs.ext3', '-q', '-F']],
    ['xfs', ['mkfs.xfs', '-q', '-f']],
    ['btrfs', ['mkfs.btrfs', '-q', '-f']],
    ['swap', ['mkswap']],
  ])('%s is detected as blkid detects it', async (type, cmd) => {
    const { execFileSync, spawnSync } = await import('node:child_process');
    if (spawnSync('which', [cmd[0]!]).status !== 0) return; // tool not installed on this host
    const img = join(tmp.path, `raw-${type}.img`);
    execFileSync('truncate', ['-s', '320M', img]);
    execFileSync(cmd[0]!, [...cmd.slice(1), img], { stdio: 'ignore' });
    const blkid = (tag: string): string => spawnSync('blkid', ['-p', '-o', 'value', '-s', tag, img], { encoding: 'utf8' }).stdout.trim();
    const v = (await scanFile(img)).volumes[0]!;
    expect(v.content?.type).toBe(blkid('TYPE'));
    expect(v.content?.uuid ?? '').toBe(blkid('UUID'));
    if (type !== 'exfat') expect(v.content?.label ?? '').toBe(blkid('LABEL')); // exFAT keeps its label in the root directory
  });
});
