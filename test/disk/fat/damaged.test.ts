/**
 * Hostile FAT and exFAT images: each damage must end in a typed error naming the image, the
 * structure and the offset, never a hang, a crash or wrong bytes.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError, isPbsfsError, FormatError } from '../../../src/errors.js';
import { exfatDriver, ExfatFilesystem } from '../../../src/disk/exfat/index.js';
import { parseFatBootSector } from '../../../src/disk/fat/boot-sector.js';
import { fatDriver } from '../../../src/disk/fat/index.js';
import type { Filesystem } from '../../../src/disk/filesystem.js';
import { BufferReadAt } from '../../../src/io/read-at.js';
import { pattern, run } from './oracle.js';

let work: string;
let fat16: Buffer;
let exfat: Buffer;

async function inoOf(fs: Filesystem, path: string): Promise<number> {
  let ino = fs.rootIno;
  for (const part of path.split('/')) ino = (await fs.lookup(ino, Buffer.from(part)))!;
  return ino;
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pbsfs-fat-damaged-'));
  writeFileSync(join(work, 'big.bin'), pattern(100_000, 5));
  const img = join(work, 'fat16.img');
  run('truncate', ['-s', '32M', img]);
  run('mkfs.vfat', ['-F', '16', img]);
  run('mmd', ['-i', img, '::/sub', '::/sub/inner'], { LC_ALL: 'C.UTF-8' });
  run('mcopy', ['-i', img, join(work, 'big.bin'), '::/big.bin'], { LC_ALL: 'C.UTF-8' });
  fat16 = readFileSync(img);

  const ex = join(work, 'exfat.img');
  run('truncate', ['-s', '16M', ex]);
  run('mkfs.exfat', [ex]);
  const mnt = join(work, 'mnt');
  mkdirSync(mnt);
  const loop = run('losetup', ['-f', '--show', ex]).trim();
  try {
    run('mount.exfat-fuse', [loop, mnt]);
    try {
      execFileSync('cp', [join(work, 'big.bin'), join(mnt, 'big.bin')]);
      writeFileSync(join(mnt, 'hello.txt'), 'hello\n');
    } finally {
      run('fusermount', ['-u', mnt]);
    }
  } finally {
    run('losetup', ['-d', loop]);
  }
  exfat = readFileSync(ex);
}, 60_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    expect(isPbsfsError(e)).toBe(true);
    return e as Error;
  }
  throw new Error('no error');
}

/** XORs one byte of an image (the damage a test plants). */
function flip(img: Buffer, at: number, mask: number): void {
  img.writeUInt8(img.readUInt8(at) ^ mask, at);
}

describe('damaged FAT16 image', () => {
  const boot = () => parseFatBootSector(fat16.subarray(0, 512), 'x');
  async function withFirstCluster(mutate: (img: Buffer, first: number) => void): Promise<Filesystem> {
    const img = Buffer.from(fat16);
    const fs = await fatDriver.open(new BufferReadAt('damaged.img', img));
    const ino = await inoOf(fs, 'big.bin');
    const entry = boot().rootDirOffset + (ino - 3) * 32;
    mutate(img, img.readUInt16LE(entry + 26));
    return fatDriver.open(new BufferReadAt('damaged.img', img));
  }

  it('refuses a cluster chain that loops', async () => {
    const fs = await withFirstCluster((img, first) => img.writeUInt16LE(first, boot().fatOffset + first * 2));
    const e = await failure(fs.read(await inoOf(fs, 'big.bin'), 0, 100_000));
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toMatch(/^damaged\.img at offset \d+: the cluster chain of the file whose entry is at byte \d+ \(FAT16\) loops back to cluster \d+/);
  });

  it('refuses a cluster number outside the data area', async () => {
    const fs = await withFirstCluster((img, first) => img.writeUInt16LE(0xfff0, boot().fatOffset + first * 2));
    expect((await failure(fs.read(await inoOf(fs, 'big.bin'), 0, 100_000))).message).toMatch(/names cluster 65520, outside the data area/);
  });

  it('refuses a chain shorter than the file', async () => {
    const fs = await withFirstCluster((img, first) => img.writeUInt16LE(0xffff, boot().fatOffset + first * 2));
    expect((await failure(fs.read(await inoOf(fs, 'big.bin'), 0, 10)))).toHaveProperty('message', expect.stringMatching(/ends after 1 of its \d+ clusters/));
  });

  it('refuses a directory that contains its own parent (a directory loop)', async () => {
    const img = Buffer.from(fat16);
    const fs0 = await fatDriver.open(new BufferReadAt('damaged.img', img));
    const sub = await inoOf(fs0, 'sub');
    const subCluster = img.readUInt16LE(boot().rootDirOffset + (sub - 3) * 32 + 26);
    const dataOffset = boot().dataOffset;
    const cs = boot().clusterSize;
    // sub/inner is the third entry of sub (after "." and ".."): point it back at sub.
    img.writeUInt16LE(subCluster, dataOffset + (subCluster - 2) * cs + 2 * 32 + 26);
    const fs = await fatDriver.open(new BufferReadAt('damaged.img', img));
    expect((await failure(fs.readdir(await inoOf(fs, 'sub')))).message).toMatch(/a directory loop/);
  });

  it('refuses a truncated image when a read reaches past its end', async () => {
    const fs = await fatDriver.open(new BufferReadAt('short.img', fat16.subarray(0, boot().dataOffset + 4 * boot().clusterSize + 50_000)));
    expect((await failure(fs.read(await inoOf(fs, 'big.bin'), 0, 100_000))).message).toMatch(/lies outside the stream/);
  });
});

describe('damaged exFAT image', () => {
  it('refuses an entry set whose checksum does not match', async () => {
    const img = Buffer.from(exfat);
    const fs = (await exfatDriver.open(new BufferReadAt('damaged.img', img))) as ExfatFilesystem;
    const ino = await inoOf(fs, 'hello.txt');
    flip(img, fs.boot.heapOffset + (ino - 3) * 32 + 64 + 2, 0x01); // the first name unit
    const e = await failure((await exfatDriver.open(new BufferReadAt('damaged.img', img))).readdir(2));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toMatch(/^damaged\.img at offset \d+: exFAT: the entry set at byte \d+ fails its checksum/);
  });

  it('uses the backup boot region when the main one fails its checksum, and refuses when both do', async () => {
    const img = Buffer.from(exfat);
    flip(img, 100, 0xff); // the serial number of the main boot sector
    const fs = await exfatDriver.open(new BufferReadAt('damaged.img', img));
    expect(fs.uuid).toBe((await exfatDriver.open(new BufferReadAt('good.img', exfat))).uuid);
    flip(img, 12 * 512 + 100, 0xff);
    const e = await failure(exfatDriver.open(new BufferReadAt('damaged.img', img)));
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.message).toMatch(/boot region checksum mismatch/);
  });

  it('refuses a contiguous file that runs past the cluster heap', async () => {
    const img = Buffer.from(exfat);
    const fs = (await exfatDriver.open(new BufferReadAt('damaged.img', img))) as ExfatFilesystem;
    const ino = await inoOf(fs, 'big.bin');
    const set = fs.boot.heapOffset + (ino - 3) * 32;
    img.writeUInt32LE(fs.boot.clusterCount, set + 32 + 20); // first cluster near the end
    img[set + 32 + 1]! |= 0x02; // NoFatChain
    const { setChecksum } = await import('../../../src/disk/exfat/entry-set.js');
    img.writeUInt16LE(setChecksum(img.subarray(set, set + 32 * (1 + img[set + 1]!))), set + 2);
    const fs2 = await exfatDriver.open(new BufferReadAt('damaged.img', img));
    expect((await failure(fs2.read(await inoOf(fs2, 'big.bin'), 0, 10))).message).toMatch(/lies outside the data area/);
  });
});
