/**
 * `pbsfs cat SNAPSHOT ARCHIVE [PATH]`: writes an image or other index archive (verified chunk by
 * chunk) or a blob to stdout, byte-exact, respecting backpressure. With PATH, the pxar layer
 * prints one file from inside a file archive (see ../pxar-hooks.ts).
 */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import type { IndexReadAt } from '../../index/index-read-at.js';
import { action, globalOptions } from '../context.js';
import type { ChunkDecoder } from '../../chunks/chunk-decoder.js';
import { WorkerPoolDecoder } from '../../chunks/worker-pool-decoder.js';
import { decodeThreadsSetting } from '../decode-threads.js';
import { catPxarPath } from '../pxar-hooks.js';
import { isManifestName } from '../../snapshot/snapshot.js';
import { OutputClosed, writeWithBackpressure } from '../stream-out.js';
import { openSnapshotArg } from '../snapshot-args.js';
import { ALLOW_DAMAGED_HELP, finishDamageReport, startDamageReport, withDamageNote } from '../damage-output.js';

/** Chunks fetched ahead of the one being written. */
const READ_AHEAD = 2;

/** Streams every chunk of an index archive in order, a few chunks fetched ahead. */
export async function streamIndex(readAt: IndexReadAt, out: Writable): Promise<void> {
  const n = readAt.index.count;
  const pending: Promise<Buffer>[] = [];
  let next = 0;
  const fill = (): void => {
    while (next < n && pending.length <= READ_AHEAD) {
      const p = readAt.chunk(next++);
      // It may fail while an earlier chunk or a write is still awaited: mark it handled now (the
      // await below still sees the failure), or Node aborts on an unhandled rejection.
      p.catch(() => undefined);
      pending.push(p);
    }
  };
  try {
    fill();
    while (pending.length > 0) {
      const chunk = await pending.shift()!;
      fill();
      // The chunk is shared with the cache; stdout only reads it.
      await writeWithBackpressure(out, chunk);
    }
  } finally {
    for (const p of pending) p.catch(() => undefined);
  }
}

export function register(program: Command): void {
  program
    .command('cat')
    .description('write an archive (disk image, blob, raw index stream) or a file inside a pxar archive to stdout')
    .argument('<snapshot>', 'snapshot, e.g. vm/100/2024-06-05T10:20:30Z')
    .argument('<archive>', 'archive, e.g. drive-scsi0.img, qemu-server.conf, root.pxar')
    .argument('[path]', 'path inside a pxar archive')
    .option('--allow-damaged', ALLOW_DAMAGED_HELP)
    .addHelpText(
      'after',
      '\nWith --allow-damaged, unreadable chunks of an index archive are written as zeros of their exact\n' +
        'length; the damage report goes to stderr (JSON lines with --output-format json) and the exit\n' +
        'status is 1 when anything was zero-filled. Blobs are never zero-filled.',
    )
    .action(
      action(async (snapshotArg: string, archive: string, path: string | undefined, opts: { allowDamaged?: boolean }, cmd: Command) => {
        const g = globalOptions(cmd);
        const damage = startDamageReport(opts.allowDamaged);
        // A one-pass stream gains nothing from a big cache; keep the footprint small. With two or
        // more cores, chunks decode on worker threads (started on first use) while the main
        // thread writes: 1 GiB encrypted image on 2 cores, 1.85 s -> 1.5 s.
        // PBSFS_DECODE_THREADS=N sets the thread count; 0 decodes in-process.
        const threads = decodeThreadsSetting((cores) => Math.min(4, cores));
        let pool: WorkerPoolDecoder | undefined;
        const usePool = path === undefined && threads >= 2;
        const decoder: ChunkDecoder = (raw, job) => {
          pool ??= new WorkerPoolDecoder({ threads });
          return pool.decoder(raw, job);
        };
        const out = process.stdout;
        // A closed pipe (e.g. `| head`) ends the command quietly, as cat(1) does.
        out.on('error', () => undefined);
        try {
          const { snapshot } = await openSnapshotArg(g, snapshotArg, {
            ...(path === undefined ? { cacheBytes: 16 * 1024 * 1024, ...(usePool ? { decoder } : {}) } : {}),
            ...(damage !== undefined ? { damage } : {}),
          });
          if (path !== undefined) {
            await catPxarPath({ snapshot, archive, path, out });
          } else {
            const entry = isManifestName(archive) ? undefined : snapshot.resolveFile(archive);
            if (entry === undefined) {
              await writeWithBackpressure(out, await snapshot.manifestText());
            } else if (entry.filename.endsWith('.blob')) {
              await writeWithBackpressure(out, await snapshot.readBlob(entry.filename));
            } else {
              const { readAt } = await snapshot.openIndex(entry.filename);
              await streamIndex(readAt, out);
            }
          }
        } catch (e) {
          if (!(e instanceof OutputClosed)) {
            finishDamageReport(g, damage);
            throw withDamageNote(e, damage);
          }
        } finally {
          await pool?.close();
        }
        // stdout is the data: the report goes to stderr.
        finishDamageReport(g, damage);
      }),
    );
}
