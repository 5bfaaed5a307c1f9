/**
 * `pbsfs files SNAPSHOT`: the files of a snapshot as its manifest lists them (the manifest is
 * verified when a key is given), plus index.json.blob itself, as upstream lists it.
 */
import { createHash } from 'node:crypto';
import type { Command } from 'commander';
import { MANIFEST_BLOB_NAME, MAX_MANIFEST_BYTES } from '../../manifest/manifest.js';
import { formatBytes } from '../../util/bytes.js';
import { action, globalOptions, printResult, renderTable } from '../context.js';
import { openSnapshotArg } from '../snapshot-args.js';

interface FileItem {
  filename: string;
  'crypt-mode': string;
  size: number;
  csum: string;
}

export function register(program: Command): void {
  program
    .command('files')
    .description('list the files of a snapshot (TYPE/ID/TIME)')
    .argument('<snapshot>', 'snapshot, e.g. vm/100/2024-06-05T10:20:30Z')
    .action(
      action(async (snapshotArg: string, _opts: unknown, cmd: Command) => {
        const g = globalOptions(cmd);
        const { snapshot } = await openSnapshotArg(g, snapshotArg);
        const m = snapshot.manifest;
        const rawManifest = await snapshot.source.readFile(MANIFEST_BLOB_NAME, MAX_MANIFEST_BYTES);
        const items: FileItem[] = [
          {
            filename: MANIFEST_BLOB_NAME,
            'crypt-mode': m.signature !== null ? 'sign-only' : 'none',
            size: rawManifest.length,
            csum: createHash('sha256').update(rawManifest).digest('hex'),
          },
          ...m.files.map((f) => ({ filename: f.filename, 'crypt-mode': f.cryptMode, size: f.size, csum: f.csum })),
        ];
        printResult(g, items, () =>
          renderTable([
            ['filename', 'size', 'crypt-mode', 'csum'],
            ...items.map((f) => [f.filename, `${f.size} (${formatBytes(f.size)})`, f['crypt-mode'], f.csum]),
          ]),
        );
      }),
    );
}
