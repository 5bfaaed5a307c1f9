/**
 * Writes a pxar archive (or a subtree of it) as a POSIX.1-2001 (pax) tar stream, as
 * proxmox-file-restore offers directories for download: every entry gets a pax header with its
 * full path, link target, mtime to the nanosecond and its xattrs, ACLs and file capabilities as
 * SCHILY.xattr records (what GNU tar restores with --xattrs --acls); then a ustar header with
 * mode, owner, size and device numbers. Sockets cannot be stored in tar and are skipped with a
 * warning. Hardlinks whose target lies outside the written subtree become regular files.
 */
import { allXattrs } from '../pxar/acl.js';
import { PxarAccessor } from '../pxar/accessor.js';
import { PxarSequentialDecoder } from '../pxar/sequential.js';
import type { PxarEntry } from '../pxar/types.js';
import type { ReadAt } from '../io/read-at.js';
import { IoError } from '../errors.js';

const BLOCK = 512;
const TYPE: Record<string, string> = { file: '0', hardlink: '1', symlink: '2', chardev: '3', blockdev: '4', directory: '5', fifo: '6' };

export interface TarSummary {
  entries: number;
  bytes: number;
  skipped: number;
  warnings: string[];
}

export type Write = (b: Buffer) => Promise<void>;

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0').slice(-(width - 1)) + '\0';
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function header(name: Buffer, type: string, size: number, e: { mode: number; uid: number; gid: number; mtime: number }, link: Buffer, dev?: { major: number; minor: number }): Buffer {
  const h = Buffer.alloc(BLOCK);
  name.copy(h, 0, 0, Math.min(name.length, 100));
  h.write(octal(e.mode & 0o7777, 8), 100, 'latin1');
  h.write(octal(Math.min(e.uid, 0o7777777), 8), 108, 'latin1');
  h.write(octal(Math.min(e.gid, 0o7777777), 8), 116, 'latin1');
  h.write(octal(Math.min(size, 0o77777777777), 12), 124, 'latin1');
  h.write(octal(Math.max(0, Math.min(e.mtime, 0o77777777777)), 12), 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write(type, 156, 'latin1');
  link.copy(h, 157, 0, Math.min(link.length, 100));
  h.write('ustar\u000000', 257, 'latin1');
  if (dev !== undefined) {
    h.write(octal(dev.major, 8), 329, 'latin1');
    h.write(octal(dev.minor, 8), 337, 'latin1');
  }
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'latin1');
  return h;
}

function padding(n: number): Buffer {
  return Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);
}

/** One entry: pax header, ustar header, contents (padded). */
async function writeEntry(write: Write, name: Buffer, e: PxarEntry, type: string, link: Buffer, contents?: AsyncIterable<Buffer>): Promise<number> {
  const md = e.metadata!;
  const st = md.stat;
  const size = type === '0' ? e.size : 0;
  const recs = [paxRecord('path', name), paxRecord('mtime', Buffer.from(`${st.mtimeSecs}.${String(st.mtimeNanos).padStart(9, '0')}`))];
  if (link.length > 0) recs.push(paxRecord('linkpath', link));
  if (size > 0o77777777777) recs.push(paxRecord('size', Buffer.from(String(size))));
  if (st.uid > 0o7777777) recs.push(paxRecord('uid', Buffer.from(String(st.uid))));
  if (st.gid > 0o7777777) recs.push(paxRecord('gid', Buffer.from(String(st.gid))));
  if (type !== '2' && type !== '1') for (const x of allXattrs(md)) recs.push(paxRecord(`SCHILY.xattr.${x.name.toString('latin1')}`, x.value));
  const pax = Buffer.concat(recs);
  const meta = { mode: st.mode, uid: st.uid, gid: st.gid, mtime: st.mtimeSecs };
  await write(header(Buffer.from('PaxHeader'), 'x', pax.length, meta, Buffer.alloc(0)));
  await write(Buffer.concat([pax, padding(pax.length)]));
  await write(header(name, type, size, meta, link, e.device));
  if (contents === undefined) return 0;
  let n = 0;
  for await (const b of contents) {
    n += b.length;
    await write(b);
  }
  if (n !== size) throw new IoError(`file contents ended after ${n} of ${size} bytes`, { file: name.toString() });
  await write(padding(n));
  return n;
}

/**
 * Writes the subtree at `startPath` (default: the whole archive) to `write` as tar. Names are
 * relative: the archive root's children at the top, or `<name>/...` for a chosen directory.
 */
export async function writePxarTar(archive: ReadAt, payload: ReadAt | undefined, write: Write, startPath?: string | Buffer): Promise<TarSummary> {
  const acc = await PxarAccessor.open(archive, payload);
  const start = startPath === undefined ? acc.root() : await acc.requirePath(startPath);
  const isRoot = start.filenameOffset < 0;
  const summary: TarSummary = { entries: 0, bytes: 0, skipped: 0, warnings: [] };
  const prefix = isRoot ? Buffer.alloc(0) : start.name;
  const written = new Map<number, Buffer>();
  const emit = async (name: Buffer, e: PxarEntry, stream: (x: PxarEntry) => AsyncIterable<Buffer>): Promise<void> => {
    if (e.kind === 'socket') {
      summary.skipped++;
      summary.warnings.push(`${name.toString()}: socket skipped (tar cannot store sockets)`);
      return;
    }
    if (e.kind === 'hardlink') {
      const target = written.get(e.hardlink!.targetFilenameOffset);
      const t = target === undefined ? await acc.resolve(e) : undefined;
      if (target !== undefined) await writeEntry(write, name, { ...(await acc.resolve(e)) }, '1', target);
      else {
        summary.bytes += await writeEntry(write, name, t!, '0', Buffer.alloc(0), acc.stream(t!));
        written.set(t!.filenameOffset, name);
      }
      summary.entries++;
      return;
    }
    const type = TYPE[e.kind]!;
    const link = e.kind === 'symlink' ? e.symlinkTarget! : Buffer.alloc(0);
    const dirName = e.kind === 'directory' ? Buffer.concat([name, Buffer.from('/')]) : name;
    summary.bytes += await writeEntry(write, dirName, e, type, link, e.kind === 'file' ? stream(e) : undefined);
    if (e.kind === 'file') written.set(e.filenameOffset, name);
    summary.entries++;
  };
  if (start.kind !== 'directory') {
    await emit(start.name, start, (x) => acc.stream(x));
  } else {
    const seq = await PxarSequentialDecoder.open(acc.archive, payload);
    for await (const e of seq.entries(isRoot ? undefined : { entry: start, path: Buffer.from('/') })) {
      const rel = e.path.subarray(1);
      if (e.depth === 0 && isRoot) continue;
      const name = prefix.length === 0 ? rel : rel.length === 0 ? prefix : Buffer.concat([prefix, Buffer.from('/'), rel]);
      await emit(name, e, (x) => seq.stream(x));
    }
  }
  await write(Buffer.alloc(BLOCK * 2));
  return summary;
}

