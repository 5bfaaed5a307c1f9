/** FAT12/16 and exFAT images: open, walk every directory, stat and read every file. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exfatDriver } from '../../../src/disk/exfat/index.js';
import { bootChecksum } from '../../../src/disk/exfat/boot-region.js';
import { fatDriver } from '../../../src/disk/fat/index.js';
import type { FilesystemDriver } from '../../../src/disk/filesystem.js';
import { BufferReadAt } from '../../../src/io/read-at.js';
import type { FuzzTarget, Prepared, Seed } from '../framework.js';

const MAX_NODES = 4000;

/** Walks the whole filesystem in `input` (bounded in nodes and bytes read). */
async function walk(driver: FilesystemDriver, input: Buffer): Promise<void> {
  const src = new BufferReadAt('fuzz.img', input);
  if (!(await driver.probe(src))) return;
  const fs = await driver.open(src);
  const queue = [fs.rootIno];
  let seen = 0;
  while (queue.length > 0 && seen < MAX_NODES) {
    const ino = queue.shift()!;
    for (const e of await fs.readdir(ino)) {
      if (++seen > MAX_NODES) break;
      const st = await fs.stat(e.ino);
      if ((st.mode & 0o170000) === 0o040000) queue.push(e.ino);
      else await fs.read(e.ino, 0, Math.min(st.size, 1 << 20));
    }
  }
}

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: 'ignore', env: { ...process.env, TZ: 'UTC', LC_ALL: 'C.UTF-8' } });
}

/** Small images built by mkfs.vfat and mtools: long names, a subdirectory, a multi-cluster file. */
function fatSeeds(): Seed[] {
  const dir = mkdtempSync(join(tmpdir(), 'pbsfs-fuzz-fat-'));
  try {
    const out: Seed[] = [];
    writeFileSync(join(dir, 'f.bin'), Buffer.alloc(9000, 0x61));
    for (const bits of [12, 16]) {
      const img = join(dir, `fat${bits}.img`);
      sh('truncate', ['-s', bits === 12 ? '512K' : '9M', img]);
      sh('mkfs.vfat', ['-F', String(bits), '-n', 'FUZZ', img]);
      sh('mmd', ['-i', img, '::/A Long Directory Name', '::/A Long Directory Name/sub']);
      sh('mcopy', ['-i', img, join(dir, 'f.bin'), '::/A Long Directory Name/a long file name.bin']);
      sh('mcopy', ['-i', img, join(dir, 'f.bin'), '::/short.txt']);
      const data = readFileSync(img);
      out.push({ name: `mkfs.vfat -F ${bits}`, data: bits === 12 ? data : data.subarray(0, 256 * 1024), hot: [0, 11, 13, 14, 16, 17, 19, 22, 36, 44, 510] });
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function exfatSeeds(): Seed[] {
  const dir = mkdtempSync(join(tmpdir(), 'pbsfs-fuzz-exfat-'));
  try {
    const img = join(dir, 'exfat.img');
    sh('truncate', ['-s', '1M', img]);
    sh('mkfs.exfat', ['-L', 'FUZZ', '-b', '4096', '-c', '4096', img]);
    return [{ name: 'mkfs.exfat', data: readFileSync(img), hot: [64, 72, 80, 84, 88, 92, 96, 106, 108, 109, 110] }];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Rewrites the main boot region's checksum sector so mutations reach the code behind it. */
function fixExfatBootChecksum(input: Buffer): Buffer {
  if (input.length < 12 * 512) return input;
  const out = Buffer.from(input);
  const sum = bootChecksum(out, 512);
  for (let i = 0; i < 512; i += 4) out.writeUInt32LE(sum, 11 * 512 + i);
  return out;
}

export const fatTarget: FuzzTarget = {
  name: 'fat',
  description: 'FAT12/16 images from mkfs.vfat + mtools: open, walk, stat and read everything',
  async prepare(): Promise<Prepared> {
    return { seeds: fatSeeds(), decode: (input) => walk(fatDriver, input), maxInputBytes: 4 << 20 };
  },
};

export const exfatTarget: FuzzTarget = {
  name: 'exfat',
  description: 'exFAT images from mkfs.exfat: boot region, up-case table, bitmap, root entries, walk',
  async prepare(): Promise<Prepared> {
    return { seeds: exfatSeeds(), decode: (input) => walk(exfatDriver, input), fixup: fixExfatBootChecksum, maxInputBytes: 4 << 20 };
  },
};
