/**
 * Two ways to look at one filesystem, for behavioural suites that must agree (rclone vfstest
 * style): straight through the VfsCore inode API (what the FUSE adapter calls), and through a
 * real kernel mount (node:fs with Buffer paths, so non-UTF-8 names survive).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { ROOT_ID, VfsCore, errnoOf } from '../../src/vfs/core.js';

export interface DriverStat {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  rdev: number;
}

export interface FsDriver {
  readonly name: string;
  /** Names in a directory, sorted by bytes, without "." and "..". */
  list(path: Buffer): Promise<Buffer[]>;
  lstat(path: Buffer): Promise<DriverStat>;
  readlink(path: Buffer): Promise<Buffer>;
  read(path: Buffer, offset: number, length: number): Promise<Buffer>;
  /** errno name of a failed operation, or 'OK'. */
  errnoOf(op: () => Promise<unknown>): Promise<string>;
}

export function p(...parts: (string | Buffer)[]): Buffer {
  const bufs: Buffer[] = [];
  for (const part of parts) {
    if (bufs.length) bufs.push(Buffer.from('/'));
    bufs.push(typeof part === 'string' ? Buffer.from(part) : part);
  }
  return Buffer.concat(bufs);
}

function splitPath(path: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === 0x2f) {
      if (i > start) out.push(path.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

/** The VfsCore inode API, the way the kernel drives it (lookup per component). */
export function coreDriver(core: VfsCore): FsDriver {
  const walk = async (path: Buffer): Promise<number> => {
    let id = ROOT_ID;
    for (const part of splitPath(path)) {
      const r = await core.lookup(id, part);
      if (r === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      id = r.nodeid;
    }
    return id;
  };
  return {
    name: 'core',
    async list(path) {
      const dh = await core.opendir(await walk(path));
      try {
        const entries = await core.readdir(dh, 0, true, () => true);
        return entries.map((e) => e.name).filter((n) => n.toString() !== '.' && n.toString() !== '..');
      } finally {
        core.releasedir(dh);
      }
    },
    async lstat(path) {
      const st = await core.getattr(await walk(path));
      return {
        ino: st.ino,
        mode: st.mode,
        nlink: st.nlink,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        mtimeNs: BigInt(st.mtimeSec) * 1_000_000_000n + BigInt(st.mtimeNsec),
        rdev: st.rdev,
      };
    },
    async readlink(path) {
      return core.readlink(await walk(path));
    },
    async read(path, offset, length) {
      const fh = await core.open(await walk(path));
      try {
        return await core.read(fh, offset, length);
      } finally {
        await core.release(fh);
      }
    },
    async errnoOf(op) {
      try {
        await op();
        return 'OK';
      } catch (e) {
        return errnoOf(e);
      }
    },
  };
}

/** A kernel mount at `root`. */
export function kernelDriver(root: string): FsDriver {
  const abs = (path: Buffer): Buffer => Buffer.concat([Buffer.from(root + '/'), path]);
  return {
    name: 'kernel',
    async list(path) {
      const names = await fsp.readdir(abs(path), { encoding: 'buffer' });
      return names.sort(Buffer.compare);
    },
    async lstat(path) {
      const st = await fsp.lstat(abs(path), { bigint: true });
      return {
        ino: Number(st.ino),
        mode: Number(st.mode),
        nlink: Number(st.nlink),
        uid: Number(st.uid),
        gid: Number(st.gid),
        size: Number(st.size),
        mtimeNs: st.mtimeNs,
        rdev: Number(st.rdev),
      };
    },
    async readlink(path) {
      return fsp.readlink(abs(path), { encoding: 'buffer' });
    },
    async read(path, offset, length) {
      const fh = await fsp.open(abs(path), 'r');
      try {
        const buf = Buffer.alloc(length);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return buf.subarray(0, got);
      } finally {
        await fh.close();
      }
    },
    async errnoOf(op) {
      try {
        await op();
        return 'OK';
      } catch (e) {
        return (e as NodeJS.ErrnoException).code ?? 'UNKNOWN';
      }
    },
  };
}

export function joinRoot(root: string, path: Buffer): Buffer {
  return Buffer.concat([Buffer.from(join(root, '/')), path]);
}
