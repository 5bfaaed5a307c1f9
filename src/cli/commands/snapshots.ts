/**
 * `pbsfs snapshots [GROUP]`: the snapshots of a namespace (or of one group), oldest first per
 * group. JSON uses upstream field names; size and crypt mode come from each manifest (one small
 * file per snapshot), and are left out when the manifest cannot be read.
 */
import type { Command } from 'commander';
import { decodeManifestBlob, MANIFEST_BLOB_NAME, MAX_MANIFEST_BYTES, type Manifest } from '../../manifest/manifest.js';
import { formatSnapshotRef, parseGroupRef, snapshotRelPath } from '../../store/backup-ref.js';
import { readSnapshotFileOnce, type Repository, type SnapshotInfo } from '../../store/repository.js';
import { formatBytes } from '../../util/bytes.js';
import { action, globalOptions, printResult, renderTable } from '../context.js';
import { archiveLabel, namespaceOf, openDatastore } from '../snapshot-args.js';

interface SnapshotListItem {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  files: string[];
  size?: number;
  'crypt-mode'?: string;
  ns?: string;
  incomplete?: true;
  error?: string;
}

async function readManifest(ds: Repository, s: SnapshotInfo): Promise<Manifest> {
  const raw = await readSnapshotFileOnce(ds, s.ns, s, MANIFEST_BLOB_NAME, MAX_MANIFEST_BYTES);
  return decodeManifestBlob(raw, `${snapshotRelPath(s.ns, s)}/${MANIFEST_BLOB_NAME}`);
}

/** One crypt mode for the snapshot: the files' common mode, or `mixed`. */
function snapshotCryptMode(files: readonly { cryptMode: string }[]): string | undefined {
  const modes = new Set(files.map((f) => f.cryptMode));
  if (modes.size === 0) return undefined;
  return modes.size === 1 ? [...modes][0] : 'mixed';
}

/**
 * The manifest's files as a server listing reports them: every entry with size and crypt mode
 * except index.json.blob itself (listed after them) and files outside the manifest (no size).
 */
function manifestFilesFromListing(s: SnapshotInfo): { size: number; cryptMode: string }[] | undefined {
  if (s.fileInfo === undefined) return undefined;
  const out: { size: number; cryptMode: string }[] = [];
  for (const f of s.fileInfo) {
    if (f.filename === MANIFEST_BLOB_NAME || f.size === undefined || f.cryptMode === undefined) continue;
    out.push({ size: f.size, cryptMode: f.cryptMode });
  }
  return out;
}

async function describe(ds: Repository, s: SnapshotInfo): Promise<SnapshotListItem> {
  const item: SnapshotListItem = {
    'backup-type': s.type,
    'backup-id': s.id,
    'backup-time': s.time,
    files: s.files,
  };
  if (s.ns.length) item.ns = s.ns.join('/');
  if (!s.complete) {
    item.incomplete = true;
    return item;
  }
  try {
    // A listing that knows sizes and crypt modes saves one manifest read per snapshot.
    const files = manifestFilesFromListing(s) ?? (await readManifest(ds, s)).files;
    item.size = files.reduce((a, f) => a + f.size, 0);
    const cm = snapshotCryptMode(files);
    if (cm !== undefined) item['crypt-mode'] = cm;
  } catch (e) {
    item.error = e instanceof Error ? e.message : String(e);
  }
  return item;
}

export function register(program: Command): void {
  program
    .command('snapshots')
    .description('list the snapshots of the datastore namespace, or of one group (TYPE/ID)')
    .argument('[group]', 'backup group, e.g. vm/100')
    .action(
      action(async (groupArg: string | undefined, _opts: unknown, cmd: Command) => {
        const g = globalOptions(cmd);
        const group = groupArg !== undefined ? parseGroupRef(groupArg) : undefined;
        const ds = await openDatastore(g);
        const ns = namespaceOf(g);
        const snaps = await ds.listSnapshots(ns, group);
        // A few manifests at a time: a datastore can hold thousands of snapshots.
        const items: SnapshotListItem[] = new Array<SnapshotListItem>(snaps.length);
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < snaps.length) {
            const i = next++;
            items[i] = await describe(ds, snaps[i]!);
          }
        };
        await Promise.all(Array.from({ length: 8 }, worker));
        printResult(g, items, () => {
          if (items.length === 0) return 'no snapshots';
          const rows = [['snapshot', 'size', 'crypt-mode', 'files']];
          for (const [i, it] of items.entries()) {
            const ref = formatSnapshotRef(snaps[i]!); // all in the --ns namespace
            rows.push([
              ref,
              it.size !== undefined ? formatBytes(it.size) : it.incomplete ? '(incomplete)' : '(unreadable)',
              it['crypt-mode'] ?? '-',
              it.files.map(archiveLabel).join(' '),
            ]);
          }
          return renderTable(rows);
        });
      }),
    );
}
