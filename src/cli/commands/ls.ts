/**
 * `pbsfs ls SNAPSHOT ARCHIVE [PATH] [-l]`: lists a directory inside a pxar archive (or shows one
 * entry), reading only the directories on the path. Names are printed as their raw bytes.
 */
import type { Command } from 'commander';
import { NotFoundError } from '../../errors.js';
import type { PxarAccessor } from '../../pxar/accessor.js';
import { MODE } from '../../pxar/format.js';
import type { PxarEntry } from '../../pxar/types.js';
import { action, globalOptions, printResult } from '../context.js';
import { openSnapshotAccessor } from '../pxar-hooks.js';
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
  entry: PxarEntry;
  /** The hardlink's target entry, or the entry itself. */
  shown: PxarEntry;
}

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8')).equals(b);
}

function toJson(r: Row): Record<string, unknown> {
  const s = r.shown;
  const st = s.metadata!.stat;
  const o: Record<string, unknown> = {
    name: r.name.toString('utf8'),
    type: r.entry.kind,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: s.kind === 'file' || s.kind === 'symlink' ? s.size : 0,
    mtime: st.mtimeSecs,
    'mtime-nsec': st.mtimeNanos,
  };
  if (!isUtf8(r.name)) o['name-hex'] = r.name.toString('hex');
  if (s.symlinkTarget !== undefined) o['link-target'] = s.symlinkTarget.toString('utf8');
  if (r.entry.hardlink !== undefined) o['hardlink-target'] = r.entry.hardlink.target.toString('utf8');
  if (s.device !== undefined) {
    o['device-major'] = s.device.major;
    o['device-minor'] = s.device.minor;
  }
  return o;
}

function longLine(r: Row, widths: number[]): Buffer {
  const s = r.shown;
  const st = s.metadata!.stat;
  const size = s.device !== undefined ? `${s.device.major}, ${s.device.minor}` : String(s.kind === 'file' || s.kind === 'symlink' ? s.size : 0);
  const cols = [modeString(st.mode), String(st.uid), String(st.gid), size];
  const head = cols.map((c, i) => (i === 0 ? c : c.padStart(widths[i] ?? 0))).join(' ') + ` ${formatTime(st.mtimeSecs)} `;
  const parts = [Buffer.from(head), r.name];
  if (s.symlinkTarget !== undefined) parts.push(Buffer.from(' -> '), s.symlinkTarget);
  if (r.entry.hardlink !== undefined) parts.push(Buffer.from(' link to '), r.entry.hardlink.target);
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

async function rowsFor(acc: PxarAccessor, path: string): Promise<Row[]> {
  const e = await acc.lookupPath(path);
  if (e === undefined) throw new NotFoundError(`no such file or directory in the archive: ${path}`, { file: acc.name });
  if (e.kind === 'directory') {
    const kids = await acc.readdir(e);
    kids.sort((a, b) => Buffer.compare(a.name, b.name));
    const rows: Row[] = [];
    for (const k of kids) rows.push({ name: k.name, entry: k, shown: await acc.resolve(k) });
    return rows;
  }
  return [{ name: e.name, entry: e, shown: await acc.resolve(e) }];
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
        const acc = await openSnapshotAccessor(snapshot, archive);
        const rows = await rowsFor(acc, path);
        if (g.outputFormat !== 'text') {
          printResult(g, rows.map(toJson), () => '');
          return;
        }
        const out: Buffer[] = [];
        if (opts.long) {
          const widths = [0, 0, 0, 0];
          for (const r of rows) {
            const s = r.shown;
            const st = s.metadata!.stat;
            const size = s.device !== undefined ? `${s.device.major}, ${s.device.minor}` : String(s.size);
            [String(st.uid), String(st.gid), size].forEach((c, i) => (widths[i + 1] = Math.max(widths[i + 1]!, c.length)));
          }
          for (const r of rows) out.push(longLine(r, widths));
        } else {
          for (const r of rows) out.push(r.name, Buffer.from('\n'));
        }
        process.stdout.write(Buffer.concat(out));
      }),
    );
}
