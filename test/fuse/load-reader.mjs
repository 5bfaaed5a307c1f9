/**
 * One reader of the mount load test (test/fuse/load.test.ts), run as its own process:
 * `node load-reader.mjs CONFIG.json INDEX`. Until its time is up it loops over random work and
 * compares every byte with the source the snapshot was made from:
 *   - a whole file of the pxar archive, hashed (SHA-256 against the reference);
 *   - random preads on the disk image, most of them straddling a chunk boundary;
 *   - random preads inside the large files.
 * Odd-numbered readers open with O_DIRECT, so their reads bypass the kernel page cache and reach
 * the mount every time (the even ones go through the page cache and its read-ahead).
 * Prints one JSON line {ops, bytes, failures} and exits 0, or 1 when any byte or error was wrong.
 * Plain JavaScript: it runs without a TypeScript build step.
 */
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';

const [configPath, indexText] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const index = Number(indexText);
const direct = index % 2 === 1;
const deadline = Date.now() + config.durationMs;

// xorshift32, seeded per reader: reproducible sequences (the seed is in the failure text).
let x = (config.seed + index * 0x9e3779b9) >>> 0 || 1;
function rnd(n) {
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  return x % n;
}

const flags = constants.O_RDONLY | (direct ? constants.O_DIRECT : 0);
const failures = [];
let ops = 0;
let bytes = 0;

/** Reads exactly `length` bytes at `offset` (fewer only at end of file). */
function pread(fd, length, offset) {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

function checkRange(name, mountFd, sourceFd, size, offset, length) {
  const want = pread(sourceFd, length, offset);
  const got = pread(mountFd, length, offset);
  bytes += got.length;
  if (!got.equals(want)) {
    let at = 0;
    while (at < Math.min(got.length, want.length) && got[at] === want[at]) at++;
    failures.push(`${name}: ${length} bytes at ${offset} (size ${size}) differ at +${at} (got ${got.length} bytes, want ${want.length})`);
  }
}

function wholeFile(f) {
  const fd = openSync(`${config.mount}/${f.rel}`, flags);
  try {
    const h = createHash('sha256');
    let pos = 0;
    for (;;) {
      const b = pread(fd, 1 << 20, pos);
      if (b.length === 0) break;
      h.update(b);
      pos += b.length;
    }
    bytes += pos;
    const sum = h.digest('hex');
    if (pos !== f.size || sum !== f.sha256) failures.push(`${f.rel}: read ${pos} bytes with SHA-256 ${sum}, want ${f.size} bytes ${f.sha256}`);
  } finally {
    closeSync(fd);
  }
}

function imageRanges() {
  const img = config.image;
  const mountFd = openSync(`${config.mount}/${img.rel}`, flags);
  const sourceFd = openSync(img.source, constants.O_RDONLY);
  try {
    for (let i = 0; i < 8 && Date.now() < deadline; i++) {
      const chunks = Math.floor(img.size / img.chunkSize);
      let offset;
      if (rnd(4) !== 0) {
        // Around a chunk boundary: up to 256 KiB before it.
        const boundary = img.chunkSize * (1 + rnd(chunks - 1));
        offset = boundary - 1 - rnd(256 * 1024);
      } else offset = rnd(img.size);
      const length = 1 + rnd(2 * 1024 * 1024);
      checkRange(img.rel, mountFd, sourceFd, img.size, offset, Math.min(length, img.size - offset + 100));
      ops++;
    }
  } finally {
    closeSync(mountFd);
    closeSync(sourceFd);
  }
}

function bigFileRanges(f) {
  const mountFd = openSync(`${config.mount}/${f.rel}`, flags);
  const sourceFd = openSync(f.source, constants.O_RDONLY);
  try {
    for (let i = 0; i < 4; i++) {
      const offset = rnd(f.size);
      checkRange(f.rel, mountFd, sourceFd, f.size, offset, 1 + rnd(1024 * 1024));
      ops++;
    }
  } finally {
    closeSync(mountFd);
    closeSync(sourceFd);
  }
}

try {
  while (Date.now() < deadline && failures.length < 5) {
    const pick = rnd(10);
    if (pick < 4) {
      wholeFile(config.files[rnd(config.files.length)]);
      ops++;
    } else if (pick < 8) imageRanges();
    else bigFileRanges(config.bigFiles[rnd(config.bigFiles.length)]);
  }
} catch (e) {
  failures.push(`reader ${index}${direct ? ' (O_DIRECT)' : ''}: ${e instanceof Error ? e.message : String(e)}`);
}
process.stdout.write(JSON.stringify({ index, direct, ops, bytes, failures }) + '\n');
process.exitCode = failures.length === 0 ? 0 : 1;
