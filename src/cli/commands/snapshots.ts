/**
 * `pbsfs snapshots [GROUP]`: the snapshots of a namespace (or of one group), oldest first per
 * group. JSON in the shape of upstream's `snapshot list`: `files` are objects with `filename`,
 * `crypt-mode` and `size` from each manifest (one small file per snapshot; the manifest itself
 * is listed too, as upstream does). A manifest that cannot be read is reported on stderr and
 * sets the exit status; when none can be read the command fails with that error.
 */
import type { Command } from 'commander';
import { decodeManifestBlob, MANIFEST_BLOB_NAME, MAX_MANIFEST_BYTES, type Manifest } from '../../manifest/manifest.js';
import { NotFoundError, isPbsfsError } from '../../errors.js';
import { formatGroupRef, parseGroupRef, snapshotRelPath } from '../../store/backup-ref.js';
import { readSnapshotFileOnce, type Repository, type SnapshotInfo } from '../../store/repository.js';
import { EXIT } from '../exit-codes.js';
import { formatNamespacedRef, requireNamespace } from '../snapshot-select.js';
import { formatBytes } from '../../util/bytes.js';
import { action, globalOptions, printResult, renderTable } from '../context.js';
import { archiveLabel, namespaceOf, openDatastore } from '../snapshot-args.js';

interface SnapshotFileItem {
  filename: string;
  'crypt-mode'?: string;
  size?: number;
}

interface SnapshotListItem {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  files: SnapshotFileItem[];
  size?: number;
  'crypt-mode'?: string;
  ns?: string;
  incomplete?: true;
  error?: string;
}

async function readManifest(ds: Repository, s: SnapshotInfo): Promise<{ manifest: Manifest; size: number }> {
  const raw = await readSnapshotFileOnce(ds, s.ns, s, MANIFEST_BLOB_NAME, MAX_MANIFEST_BYTES);
  return { manifest: decodeManifestBlob(raw, `${snapshotRelPath(s.ns, s)}/${MANIFEST_BLOB_NAME}`), size: raw.length };
}

/** One crypt mode for the snapshot: the files' common mode, or `mixed`. */
function snapshotCryptMode(files: readonly { cryptMode: string }[]): string | undefined {
  const modes = new Set(files.map((f) => f.cryptMode));
  if (modes.size === 0) return undefined;
  return modes.size === 1 ? [...modes][0] : 'mixed';
}

/** Why a listed snapshot's manifest could not be read. */
const errors = new WeakMap<SnapshotListItem, unknown>();

async function describe(ds: Repository, s: SnapshotInfo): Promise<SnapshotListItem> {
  const item: SnapshotListItem = {
    'backup-type': s.type,
    'backup-id': s.id,
    'backup-time': s.time,
    files: s.files.map((filename) => ({ filename })),
  };
  if (s.ns.length) item.ns = s.ns.join('/');
  if (!s.complete) {
    item.incomplete = true;
    return item;
  }
  try {
    const { manifest: m, size } = await readManifest(ds, s);
    item.size = m.files.reduce((a, f) => a + f.size, 0);
    const cm = snapshotCryptMode(m.files);
    if (cm !== undefined) item['crypt-mode'] = cm;
    item.files = [
      { filename: MANIFEST_BLOB_NAME, 'crypt-mode': m.signature !== null ? 'sign-only' : 'none', size },
      ...m.files.map((f) => ({ filename: f.filename, 'crypt-mode': f.cryptMode, size: f.size })),
    ];
  } catch (e) {
    item.error = e instanceof Error ? e.message : String(e);
    errors.set(item, e);
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
        await requireNamespace(ds, ns);
        if (group !== undefined && !(await ds.listGroups(ns)).some((x) => x.type === group.type && x.id === group.id)) {
          throw new NotFoundError('no such backup group' + (ns.length ? ` in namespace ${ns.join('/')}` : ''), {
            file: formatGroupRef(group),
            errorCode: 'group-not-found',
          });
        }
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
        // Unreadable manifests are loud: all of them -> that error; some -> one line each, exit status.
        const failed = items.filter((it) => errors.has(it));
        const complete = items.filter((it) => it.incomplete !== true);
        if (failed.length > 0 && failed.length === complete.length) throw errors.get(failed[0]!);
        for (const [i, it] of items.entries()) {
          if (!errors.has(it)) continue;
          process.stderr.write(`pbsfs: ${formatNamespacedRef(ns, snaps[i]!)}: cannot read the manifest: ${it.error}\n`);
          const e = errors.get(it);
          process.exitCode = Math.max(Number(process.exitCode ?? 0), isPbsfsError(e) ? e.exitCode : EXIT.internal);
        }
        printResult(g, items, () => {
          if (items.length === 0) return 'no snapshots';
          const rows = [['snapshot', 'size', 'crypt-mode', 'files']];
          for (const [i, it] of items.entries()) {
            const ref = formatNamespacedRef(ns, snaps[i]!);
            rows.push([
              ref,
              it.size !== undefined ? formatBytes(it.size) : it.incomplete ? '(incomplete)' : '(unreadable)',
              it['crypt-mode'] ?? '-',
              it.files.map((f) => archiveLabel(f.filename)).join(' '),
            ]);
          }
          return renderTable(rows);
        });
      }),
    );
}
