/**
 * `pbsfs ls SNAPSHOT ARCHIVE [PATH] [-l]`: lists a directory inside a pxar archive (or shows one
 * entry) through the FUSE-free VFS, exactly as a mount of the archive shows it; reads only the
 * directories on the path. Names are printed as their raw bytes.
 */
import type { Command } from 'commander';
import { NotFoundError } from '../../errors.js';
import { MODE, splitDev } from '../../pxar/format.js';
import type { VfsNode, VfsStat } from '../../vfs/types.js';
import { action, globalOptions, printResult } from '../context.js';
import { openArchiveVfs } from '../pxar-hooks.js';
import { openSnapshotArg } from '../snapshot-args.js';

/** `drwxr-xr-x` style mode string. */
export function modeString(mode: number): string {
  const t: Record<number, string> = {
    [MODE.IFDIR]: 'd',
    [MODE.IFREG]: '-',
    [MODE.IFLNK]: 'l',
    [MODE.IFCHR]: 'c',
    [MODE.IFBLK]: 'b',
    [MODE.IFIFO]: 'p',
    [MODE.IFSOCK]: 's',
  };
  const bit = (m: number, c: string): string => (mode & m ? c : '-');
  const special = (x: number, s: number, lower: string, upper: string): string =>
    mode & s ? (mode & x ? lower : upper) : bit(x, 'x');
  return (
    (t[mode & MODE.IFMT] ?? '?') +
    bit(0o400, 'r') +
    bit(0o200, 'w') +
    special(0o100, MODE.ISUID, 's', 'S') +
    bit(0o040, 'r') +
    bit(0o020, 'w') +
    special(0o010, MODE.ISGID, 's', 'S') +
    bit(0o004, 'r') +
    bit(0o002, 'w') +
    special(0o001, MODE.ISVTX, 't', 'T')
  );
}

function formatTime(secs: number): string {
  const d = new Date(secs * 1000);
  return Number.isNaN(d.getTime()) ? String(secs) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

interface Row {
  name: Buffer;
  node: VfsNode;
  st: VfsStat;
  /** The symlink's target, when a symlink. */
  link: Buffer | undefined;
  /** The stored path a hardlink entry points at, when one. */
  hardlink: Buffer | undefined;
}

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8')).equals(b);
}

const isDevice = (r: Row): boolean => r.node.kind === 'chardev' || r.node.kind === 'blockdev';

function toJson(r: Row): Record<string, unknown> {
  const st = r.st;
  const o: Record<string, unknown> = {
    name: r.name.toString('utf8'),
    type: r.hardlink !== undefined ? 'hardlink' : r.node.kind,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    mtime: st.mtimeSec,
    'mtime-nsec': st.mtimeNsec,
  };
  if (!isUtf8(r.name)) o['name-hex'] = r.name.toString('hex');
  if (r.link !== undefined) o['link-target'] = r.link.toString('utf8');
  if (r.hardlink !== undefined) o['hardlink-target'] = r.hardlink.toString('utf8');
  if (isDevice(r)) {
    const d = splitDev(st.rdev);
    o['device-major'] = d.major;
    o['device-minor'] = d.minor;
  }
  return o;
}

function sizeColumn(r: Row): string {
  if (!isDevice(r)) return String(r.st.size);
  const d = splitDev(r.st.rdev);
  return `${d.major}, ${d.minor}`;
}

function longLine(r: Row, widths: number[]): Buffer {
  const st = r.st;
  const cols = [modeString(st.mode), String(st.uid), String(st.gid), sizeColumn(r)];
  const head = cols.map((c, i) => (i === 0 ? c : c.padStart(widths[i] ?? 0))).join(' ') + ` ${formatTime(st.mtimeSec)} `;
  const parts = [Buffer.from(head), r.name];
  if (r.link !== undefined) parts.push(Buffer.from(' -> '), r.link);
  if (r.hardlink !== undefined) parts.push(Buffer.from(' link to '), r.hardlink);
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

async function row(name: Buffer, node: VfsNode): Promise<Row> {
  return {
    name,
    node,
    st: await node.stat(),
    link: node.kind === 'symlink' && node.readlink ? await node.readlink() : undefined,
    hardlink: node.hardlinkTarget?.(),
  };
}

/** The last component of a path as bytes (the name `ls FILE` shows). */
function baseName(path: string): Buffer {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  return Buffer.from(parts[parts.length - 1] ?? '');
}

export function register(program: Command): void {
  program
    .command('ls')
    .description('list a directory (or show an entry) inside a pxar file archive')
    .argument('<snapshot>', 'snapshot, e.g. host/myhost/2024-06-05T10:20:30Z')
    .argument('<archive>', 'file archive: root.pxar, root.pxar.didx or root.mpxar.didx')
    .argument('[path]', 'path inside the archive', '/')
    .option('-l, --long', 'long form: mode, uid, gid, size, mtime (UTC), link target')
    .action(
      action(async (snapshotArg: string, archive: string, path: string, opts: { long?: boolean }, cmd: Command) => {
        const g = globalOptions(cmd);
        const { snapshot } = await openSnapshotArg(g, snapshotArg);
        const { core, name } = await openArchiveVfs(snapshot, archive);
        const node = await core.lookupPath(path);
        if (node === undefined) throw new NotFoundError(`no such file or directory in the archive: ${path}`, { file: name, errorCode: 'path-not-found' });
        const rows =
          node.kind === 'directory'
            ? await Promise.all(((await node.readdir?.()) ?? []).map((c) => row(c.name, c.node)))
            : [await row(baseName(path), node)];
        if (g.outputFormat !== 'text') {
          printResult(g, rows.map(toJson), () => '');
          return;
        }
        const out: Buffer[] = [];
        if (opts.long) {
          const widths = [0, 0, 0, 0];
          for (const r of rows) {
            [String(r.st.uid), String(r.st.gid), sizeColumn(r)].forEach((c, i) => (widths[i + 1] = Math.max(widths[i + 1]!, c.length)));
          }
          for (const r of rows) out.push(longLine(r, widths));
        } else {
          for (const r of rows) out.push(r.name, Buffer.from('\n'));
        }
        process.stdout.write(Buffer.concat(out));
      }),
    );
}
