/**
 * `pbsfs restore SNAPSHOT ARCHIVE TARGET [--path PATH]`: restores a pxar file archive (or one path
 * inside it) with its metadata into a local directory. See src/restore/restore.ts for what is
 * restored and how writing outside TARGET is prevented. Progress on a terminal; summary at the end.
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { restorePxar, type RestoreProgress } from '../../restore/restore.js';
import { createWriteStream, openSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { UsageError, fromSystemError } from '../../errors.js';
import type { ReadAt } from '../../io/read-at.js';
import { PxarAccessor } from '../../pxar/accessor.js';
import { writePxarTar } from '../../restore/tar-writer.js';
import { OutputClosed, writeWithBackpressure } from '../stream-out.js';
import { formatBytes } from '../../util/bytes.js';
import { action, globalOptions, isInteractive, printResult } from '../context.js';
import { openSnapshotPxar } from '../pxar-hooks.js';
import { openSnapshotArg } from '../snapshot-args.js';
import { ALLOW_DAMAGED_HELP, finishDamageReport, startDamageReport, withDamageNote } from '../damage-output.js';

interface RestoreCliOptions {
  path?: string;
  format?: string;
  xattrs: boolean;
  allowDamaged?: boolean;
  deviceNodes?: boolean;
}

/** TARGET `-` or --format tar: one file raw, or a directory as tar, to stdout or a new file. */
async function restoreAsStream(archive: ReadAt, payload: ReadAt | undefined, target: string, path: string | undefined): Promise<void> {
  let out: Writable = process.stdout;
  if (target !== '-') {
    try {
      // wx: never replace an existing file.
      out = createWriteStream('', { fd: openSync(target, 'wx', 0o600) });
    } catch (e) {
      throw fromSystemError(e, target, 'cannot create the tar file');
    }
  } else out.on('error', () => undefined);
  const write = (b: Buffer): Promise<void> => writeWithBackpressure(out, b);
  try {
    const acc = await PxarAccessor.open(archive, payload);
    const start = path === undefined ? acc.root() : await acc.requirePath(path);
    if (target === '-' && start.kind === 'file') {
      for await (const b of acc.stream(start)) await write(b);
    } else {
      const s = await writePxarTar(archive, payload, write, path);
      for (const w of s.warnings) process.stderr.write(`pbsfs: warning: ${w}\n`);
    }
  } catch (e) {
    if (!(e instanceof OutputClosed)) throw e;
  } finally {
    if (out !== process.stdout) await new Promise<void>((r) => out.end(() => r()));
  }
}

export function register(program: Command): void {
  program
    .command('restore')
    .description('restore a pxar file archive, or one path inside it, into a local directory')
    .argument('<snapshot>', 'snapshot, e.g. host/myhost/2024-06-05T10:20:30Z')
    .argument('<archive>', 'file archive: root.pxar, root.pxar.didx or root.mpxar.didx')
    .argument('<target>', 'directory to restore into (created if missing; existing files are never replaced)')
    .option('--path <path>', 'restore only this path of the archive, as TARGET/<its name>')
    .option('--format <format>', 'dir (default), or tar: a pax tar stream into the file TARGET ("-": stdout, where a directory is tar and one file is its raw bytes)')
    .option('--no-xattrs', 'do not restore xattrs, ACLs and file capabilities')
    .option('--device-nodes', 'create character and block device nodes (root only; skipped with a warning by default)')
    .option('--allow-damaged', ALLOW_DAMAGED_HELP)
    .addHelpText(
      'after',
      '\nWith --allow-damaged, file contents in unreadable chunks are restored as zeros; the damaged ranges\n' +
        'and the files they hit are reported (stderr, or "damaged"/"damagedFiles" in JSON) and the exit\n' +
        'status is 1. Damage inside the archive metadata still fails the restore (exit 3).',
    )
    .action(
      action(async (snapshotArg: string, archive: string, target: string, opts: RestoreCliOptions, cmd: Command) => {
        const g = globalOptions(cmd);
        if (opts.deviceNodes && process.getuid?.() !== 0) {
          throw new UsageError('--device-nodes needs root: only root can create device nodes');
        }
        const format = opts.format ?? (target === '-' ? 'tar' : 'dir');
        if (format !== 'dir' && format !== 'tar') {
          throw new UsageError(`--format must be dir or tar, got ${JSON.stringify(format)}`, { errorCode: 'option-invalid' });
        }
        if (format === 'dir' && target === '-') throw new UsageError('--format dir needs a directory as TARGET, not "-"', { errorCode: 'option-invalid' });
        const damage = startDamageReport(opts.allowDamaged);
        const { snapshot } = await openSnapshotArg(g, snapshotArg, damage !== undefined ? { damage } : {});
        const src = await openSnapshotPxar(snapshot, archive);
        if (format === 'tar') {
          await restoreAsStream(src.archive, src.payload, target, opts.path);
          if (damage !== undefined) finishDamageReport(g, damage);
          return;
        }
        let bar: cliProgress.SingleBar | undefined;
        let last = 0;
        const onProgress = (p: RestoreProgress): void => {
          if (!isInteractive()) return;
          if (bar === undefined) {
            bar = new cliProgress.SingleBar(
              {
                stream: process.stderr,
                format: 'restore [{bar}] {percentage}% | {entries} entries | {data}',
                hideCursor: true,
                clearOnComplete: true,
              },
              cliProgress.Presets.shades_classic,
            );
            bar.start(p.total, 0, { entries: 0, data: '0 B' });
          }
          const now = Date.now();
          if (now - last < 100 && p.position < p.total) return;
          last = now;
          bar.update(p.position, { entries: p.entries, data: formatBytes(p.bytes) });
        };
        let summary;
        try {
          summary = await restorePxar(src.archive, src.payload, target, {
            ...(opts.path !== undefined ? { path: opts.path } : {}),
            xattrs: opts.xattrs,
            devices: opts.deviceNodes ?? false,
            onProgress,
            ...(damage !== undefined ? { damage } : {}),
          });
        } catch (e) {
          bar?.stop();
          finishDamageReport(g, damage, { text: true });
          throw withDamageNote(e, damage);
        } finally {
          bar?.stop();
        }
        for (const w of summary.warnings) process.stderr.write(`pbsfs: warning: ${w}\n`);
        // Damaged files: on stderr in text mode; in the JSON summary (stdout) otherwise.
        if (g.outputFormat === 'text') {
          for (const f of summary.damagedFiles ?? []) {
            process.stderr.write(`pbsfs: damaged file: ${f.path}: bytes ${f.start}..${f.end} are zeros (${f.archive} chunk ${f.chunk})\n`);
          }
        }
        const result = damage !== undefined ? { ...summary, damaged: damage.entries() } : summary;
        printResult(g, result, () => {
          const s = summary;
          const parts = [
            `${s.files} files (${formatBytes(s.bytes)})`,
            `${s.directories} directories`,
            `${s.symlinks} symlinks`,
            `${s.hardlinks} hardlinks`,
          ];
          if (s.fifos + s.sockets + s.devices > 0) parts.push(`${s.fifos} fifos, ${s.sockets} sockets, ${s.devices} devices`);
          if (s.skipped > 0) parts.push(`${s.skipped} skipped`);
          const times = s.timeMethod === 'node' ? ' (mtimes to the microsecond)' : '';
          return `restored ${parts.join(', ')} into ${s.target}${times}`;
        });
        if (g.outputFormat === 'text') finishDamageReport(g, damage);
        else if (damage !== undefined && damage.count > 0 && !process.exitCode) process.exitCode = 1;
      }),
    );
}
