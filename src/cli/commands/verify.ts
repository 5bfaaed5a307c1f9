/**
 * `pbsfs verify [SNAPSHOT]`: checks one snapshot, or every complete snapshot of the namespace
 * (and the namespaces below it): manifest (and signature with a key), every index csum, every
 * referenced chunk once (CRC, crypt mode; GCM tag, digest and size when decryptable), every
 * blob. Prints a report per file; exits 0 only when everything is sound.
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { ChunkDecoder } from '../../chunks/chunk-decoder.js';
import { WorkerPoolDecoder } from '../../chunks/worker-pool-decoder.js';
import { IntegrityError, isPbsfsError } from '../../errors.js';
import { verifySnapshot, countSnapshotChunks, type SnapshotVerifyResult } from '../../snapshot/verify.js';
import { snapshotRelPath, type Namespace, type SnapshotRef } from '../../store/backup-ref.js';
import { action, globalOptions, isInteractive, printResult } from '../context.js';
import { KeySource, namespaceOf, openDatastore } from '../snapshot-args.js';
import { selectSnapshot } from '../snapshot-select.js';
import { decodeThreadsSetting } from '../decode-threads.js';

function describeFile(f: SnapshotVerifyResult['files'][number]): string {
  const parts: string[] = [];
  if (f.chunks > 0) parts.push(`${f.chunks} chunks, ${f.chunksChecked} checked now`);
  if (f.notDecrypted > 0) parts.push(`${f.notDecrypted} encrypted, checked by CRC only (no key)`);
  const detail = parts.length ? ` (${parts.join('; ')})` : '';
  if (f.ok) return `  ${f.filename}: ok${detail}`;
  const bad = f.badChunks > 0 ? `, ${f.badChunks} bad chunks` : '';
  return [`  ${f.filename}: FAILED${detail}${bad}`, ...f.errors.map((e) => `    ${e}`)].join('\n');
}

function renderText(results: SnapshotVerifyResult[], skipped: string[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const sig = r.signatureVerified ? ', signature verified' : '';
    lines.push(`${r.snapshot}: ${r.ok ? 'ok' : 'FAILED'}${r.ok ? sig : ''}`);
    if (r.error !== undefined) lines.push(`  ${r.error}`);
    for (const f of r.files) lines.push(describeFile(f));
  }
  for (const s of skipped) lines.push(`${s}: skipped (incomplete snapshot, no manifest)`);
  const bad = results.filter((r) => !r.ok).length;
  lines.push(bad === 0 ? `all ${results.length} snapshots are sound` : `${bad} of ${results.length} snapshots have errors`);
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('verify')
    .description('verify one snapshot, or all snapshots of the namespace (and those below it)')
    .argument('[snapshot]', 'snapshot, e.g. vm/100/2024-06-05T10:20:30Z')
    .action(
      action(async (snapshotArg: string | undefined, _opts: unknown, cmd: Command) => {
        const g = globalOptions(cmd);
        const ds = await openDatastore(g);
        const ns = namespaceOf(g);
        const keys = new KeySource(g);
        const targets: { ns: Namespace; ref: SnapshotRef }[] = [];
        const skipped: string[] = [];
        if (snapshotArg !== undefined) {
          targets.push(await selectSnapshot(ds, ns, snapshotArg));
        } else {
          for (const n of [ns, ...(await ds.listNamespaces(ns))]) {
            for (const s of await ds.listSnapshots(n)) {
              if (s.complete) targets.push({ ns: n, ref: s });
              else skipped.push([...s.ns.map((c) => `ns/${c}`), s.type, s.id].join('/'));
            }
          }
        }

        let bar: cliProgress.SingleBar | undefined;
        if (isInteractive(process.stderr) && g.outputFormat === 'text') {
          let total = 0;
          for (const t of targets) total += await countSnapshotChunks(ds, t.ns, t.ref);
          bar = new cliProgress.SingleBar(
            { stream: process.stderr, format: 'verify [{bar}] {value}/{total} chunks', hideCursor: true, clearOnComplete: true },
            cliProgress.Presets.shades_classic,
          );
          bar.start(total, 0);
        }
        // With two or more cores, decode on worker threads (PBSFS_DECODE_THREADS=N; 0 = in-process).
        const threads = decodeThreadsSetting((cores) => Math.min(4, cores));
        let pool: WorkerPoolDecoder | undefined;
        const decoder: ChunkDecoder | undefined =
          threads >= 2
            ? (raw, job) => {
                pool ??= new WorkerPoolDecoder({ threads });
                return pool.decoder(raw, job);
              }
            : undefined;
        const seen = new Map<string, string | null>();
        const results: SnapshotVerifyResult[] = [];
        try {
          for (const t of targets) {
            let crypt;
            try {
              crypt = await keys.forSnapshot(ds, t.ns, t.ref, true);
            } catch (e) {
              if (!isPbsfsError(e)) throw e;
              results.push({ snapshot: snapshotRelPath(t.ns, t.ref), ok: false, signatureVerified: false, error: e.message, files: [] });
              continue;
            }
            results.push(
              await verifySnapshot(ds, t.ns, t.ref, {
                ...(crypt ? { crypt } : {}),
                ...(decoder ? { decoder, concurrency: threads * 2 } : {}),
                seen,
                onChunk: () => bar?.increment(),
              }),
            );
          }
        } finally {
          bar?.stop();
          await pool?.close();
        }
        printResult(g, results, () => renderText(results, skipped));
        const bad = results.filter((r) => !r.ok).length;
        if (bad > 0) {
          throw new IntegrityError(`verification failed: ${bad} of ${results.length} snapshots have errors`);
        }
      }),
    );
}
