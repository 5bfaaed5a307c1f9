/**
 * Shared plumbing of the snapshot commands (snapshots, files, cat, verify): the datastore from
 * --repository, the namespace from --ns, the key from --keyfile, and snapshot opening.
 */
import type { CryptConfig } from '../crypto/crypt-config.js';
import { loadKeyFile } from '../crypto/key-config.js';
import { UnsupportedError } from '../errors.js';
import { Snapshot } from '../snapshot/snapshot.js';
import { parseNamespace, parseSnapshotRef, type Namespace, type SnapshotRef } from '../store/backup-ref.js';
import { Datastore } from '../store/datastore.js';
import { requireRepository, type GlobalOptions } from './context.js';

export async function openDatastore(g: GlobalOptions): Promise<Datastore> {
  return Datastore.open(requireRepository(g));
}

export function namespaceOf(g: GlobalOptions): Namespace {
  return parseNamespace(g.ns ?? '');
}

/** The key from --keyfile (passphrase from the PBS_ENCRYPTION_PASSWORD* sources or a prompt). */
export async function loadCrypt(g: GlobalOptions): Promise<CryptConfig | undefined> {
  if (g.masterKeyfile !== undefined) {
    throw new UnsupportedError('--master-keyfile is not supported by this command yet; recover the key first and use --keyfile');
  }
  if (g.keyfile === undefined) return undefined;
  return (await loadKeyFile(g.keyfile)).crypt;
}

export interface OpenedSnapshotArgs {
  ds: Datastore;
  ns: Namespace;
  ref: SnapshotRef;
  crypt: CryptConfig | undefined;
  snapshot: Snapshot;
}

/** Parses SNAPSHOT, loads the key, opens the datastore and the snapshot (manifest checked). */
export async function openSnapshotArg(g: GlobalOptions, snapshotArg: string): Promise<OpenedSnapshotArgs> {
  const ref = parseSnapshotRef(snapshotArg);
  const ns = namespaceOf(g);
  const ds = await openDatastore(g);
  const crypt = await loadCrypt(g);
  const snapshot = await Snapshot.open(ds, ns, ref, crypt ? { crypt } : {});
  return { ds, ns, ref, crypt, snapshot };
}

/** `root.pxar.didx` -> `root.pxar` (how upstream shows archive names). */
export function archiveLabel(filename: string): string {
  return filename.replace(/\.(fidx|didx|blob)$/, '');
}
