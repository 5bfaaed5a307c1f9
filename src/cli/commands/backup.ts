/**
 * `pbsfs backup [SOURCE]`: writes a new snapshot into a local datastore directory, the way
 * proxmox-backup-client would: SOURCE (a directory) becomes NAME.pxar.didx (or with --split the
 * NAME.mpxar.didx + NAME.ppxar.didx pair), --image NAME=PATH a NAME.img.fidx, --blob NAME=PATH a
 * NAME.blob. Encrypted with --keyfile (crypt mode encrypt) unless --crypt-mode says otherwise.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import { UnsupportedError, UsageError } from '../../errors.js';
import { DEFAULT_CHUNK_SIZE } from '../../writer/chunker.js';
import type { CryptMode } from '../../manifest/manifest.js';
import { isBackupType, isValidBackupId, parseNamespace, type BackupType } from '../../store/backup-ref.js';
import { formatBytes } from '../../util/bytes.js';
import { parseRfc3339 } from '../../util/rfc3339.js';
import { checkChunkSize, runBackup, type BackupItem, type BackupProgress, type BackupResult, type NamedSource } from '../../writer/backup.js';
import { locateRepository } from '../../store/open-repository.js';
import { action, globalOptions, isInteractive, printResult, requireRepository } from '../context.js';
import { loadKeyFile } from '../../crypto/key-config.js';
import { encryptKeyForMaster, masterKeyConfigFor, readMasterKeyFile } from '../../crypto/master-key.js';

interface BackupCliOptions {
  backupType: string;
  backupId?: string;
  backupTime?: string;
  cryptMode?: string;
  split?: boolean;
  image: string[];
  blob: string[];
  chunkSize?: string;
  archiveName: string;
  xattrs: boolean;
  owner?: string;
  lazyChunkDirs?: boolean;
  masterPubkeyFile?: string;
  allFileSystems?: boolean;
  catalog: boolean;
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

function parseNamed(kind: string, spec: string): NamedSource {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new UsageError(`--${kind} wants NAME=PATH, got ${JSON.stringify(spec)}`);
  let name = spec.slice(0, eq);
  // Accept upstream-style labels too: disk.img=..., qemu-server.conf=...
  if (kind === 'image') name = name.replace(/\.img$/, '');
  return { name, path: spec.slice(eq + 1) };
}

const SPEC_RE = /^([A-Za-z0-9_-]+)\.(pxar|img|conf|log):(.+)$/s;

/**
 * Positional backup specs: `LABEL.pxar:DIR`, `LABEL.img:FILE`, `LABEL.conf:FILE`,
 * `LABEL.log:FILE` (as proxmox-backup-client takes them), or a bare directory (one at most),
 * archived as ARCHIVE_NAME.pxar.
 */
export function parseSpecs(specs: string[], archiveName: string): BackupItem[] {
  const items: BackupItem[] = [];
  let bare = 0;
  for (const spec of specs) {
    const m = SPEC_RE.exec(spec);
    if (m) {
      const [, label, ext, path] = m as unknown as [string, string, string, string];
      if (ext === 'pxar') items.push({ kind: 'pxar', name: label, path });
      else if (ext === 'img') items.push({ kind: 'image', name: label, path });
      else items.push({ kind: 'blob', name: `${label}.${ext}`, path });
      continue;
    }
    if (++bare > 1) throw new UsageError('more than one bare directory: name them, e.g. root.pxar:/ home.pxar:/home');
    items.push({ kind: 'pxar', name: archiveName, path: spec });
  }
  return items;
}

/** RFC 3339 or integer epoch seconds. */
export function parseBackupTime(s: string): number {
  if (/^\d+$/.test(s)) return Number(s);
  return parseRfc3339(s, '--backup-time');
}

function defaultBackupId(): string {
  const h = hostname().split('.')[0] ?? 'localhost';
  const id = h.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[.-]+/, '');
  return isValidBackupId(id) ? id : 'localhost';
}

/** Refuses to turn a non-empty directory that is not a datastore into one. */
function checkRepository(path: string): void {
  let names: string[];
  try {
    if (!statSync(path).isDirectory()) throw new UsageError(`repository ${path} is not a directory`);
    names = readdirSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (names.length > 0 && !names.includes('.chunks')) {
    throw new UsageError(`${path} is neither empty nor a datastore (no .chunks directory); refusing to write into it`);
  }
}

function progressLine(p: BackupProgress): Record<string, string | number> {
  const c = p.chunks;
  const ratio = c && c.newBytes > 0 ? (c.bytes / c.newBytes).toFixed(2) : c && c.bytes > 0 ? '∞' : '1.00';
  return {
    read: formatBytes(p.bytes),
    files: p.files,
    chunks: c ? c.chunks : 0,
    newChunks: c ? c.newChunks : 0,
    dedup: ratio,
  };
}

function summary(r: BackupResult, seconds: number): string {
  const c = r.chunks;
  const lines = [`snapshot ${r.snapshot} written to ${r.path}`];
  for (const f of r.files) lines.push(`  ${f.filename}: ${formatBytes(f.size)}${f.chunks !== undefined ? `, ${f.chunks} chunks` : ''}`);
  if (r.walk) {
    lines.push(
      `  ${r.walk.entries} entries (${r.walk.files} files, ${r.walk.directories} directories, ${r.walk.hardlinks} hardlinks)` +
        (r.walk.skipped ? `, ${r.walk.skipped} skipped` : ''),
    );
  }
  const dedup = c.newBytes > 0 ? (c.bytes / c.newBytes).toFixed(2) : 'all chunks already stored';
  lines.push(
    `  ${c.chunks} chunks, ${c.newChunks} new (${formatBytes(c.newBytes)} new data, ${formatBytes(c.storedBytes)} stored), dedup ${dedup}`,
  );
  const rate = seconds > 0 ? `, ${formatBytes(c.bytes / seconds)}/s` : '';
  lines.push(`  took ${seconds.toFixed(1)} s${rate}`);
  if (r.manifest.signature !== null) lines.push(`  manifest signed with key ${String(r.manifest.unprotected['key-fingerprint'])}`);
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('backup')
    .description('back up a directory (pxar), disk images and files into a new snapshot of a local datastore')
    .argument('[specs...]', 'a directory (archived as root.pxar, see --archive-name), or upstream-style LABEL.pxar:DIR, LABEL.img:FILE, LABEL.conf:FILE, LABEL.log:FILE')
    .addOption(new Option('--backup-type <type>', 'backup type').choices(['host', 'ct', 'vm']).default('host'))
    .option('--backup-id <id>', 'backup group id (default: the host name)')
    .option('--backup-time <time>', 'snapshot time, RFC 3339 or epoch seconds (default: now)')
    .addOption(new Option('--crypt-mode <mode>', 'encrypt (default with a key), sign-only or none').choices(['encrypt', 'sign-only', 'none']))
    .option('--split', 'write a split archive (NAME.mpxar.didx + NAME.ppxar.didx, format v2)', false)
    .option('--image <name=path>', 'add a disk image or block device as NAME.img.fidx (repeatable)', collect, [])
    .option('--blob <name=path>', 'add a file as NAME.blob (repeatable, at most 128 MiB)', collect, [])
    .option('--chunk-size <KiB>', 'average dynamic / fixed image chunk size in KiB (64 .. 4096, power of two)')
    .option('--archive-name <name>', 'label of the directory archive', 'root')
    .option('--no-xattrs', 'do not record xattrs, ACLs, file capabilities and chattr flags')
    .option('--all-file-systems', 'descend into other mounted filesystems (default: mount points stay empty)', false)
    .option('--no-catalog', 'do not write catalog.pcat1.didx for a unified archive')
    .option('--owner <auth-id>', 'owner written to a new backup group', 'root@pam')
    .option('--master-pubkey-file <pem>', 'also store the key, encrypted for this RSA master public key (rsa-encrypted.key.blob)')
    .addOption(new Option('--lazy-chunk-dirs', 'create .chunks/XXXX directories only as needed').hideHelp())
    .action(
      action(async (specs: string[], opts: BackupCliOptions, cmd: Command) => {
        const g = globalOptions(cmd);
        const repo = requireRepository(g);
        if (locateRepository(repo).kind !== 'local') {
          throw new UsageError(`backup writes a local datastore directory; ${JSON.stringify(repo)} is not a path (start it with / or ./)`);
        }
        checkRepository(repo);
        const type = opts.backupType;
        if (!isBackupType(type)) throw new UsageError(`--backup-type must be host, ct or vm`);
        const backupId = opts.backupId ?? defaultBackupId();
        if (!isValidBackupId(backupId)) throw new UsageError(`invalid --backup-id ${JSON.stringify(backupId)}`);
        if (g.masterKeyfile !== undefined) {
          throw new UnsupportedError('backup encrypts with --keyfile; use --master-pubkey-file to add a master key copy');
        }
        const loaded = g.keyfile !== undefined ? await loadKeyFile(g.keyfile) : undefined;
        const crypt = loaded?.crypt;
        let masterKeyCiphertext: Buffer | undefined;
        if (opts.masterPubkeyFile !== undefined) {
          if (loaded === undefined) throw new UsageError('--master-pubkey-file needs --keyfile');
          const pem = await readMasterKeyFile(opts.masterPubkeyFile);
          masterKeyCiphertext = encryptKeyForMaster(masterKeyConfigFor(loaded.crypt, loaded.created), pem);
        }
        const mode = (opts.cryptMode ?? (crypt ? 'encrypt' : 'none')) as CryptMode;
        if (mode !== 'none' && crypt === undefined) throw new UsageError(`--crypt-mode ${mode} needs --keyfile`);
        let chunkSize: number | undefined;
        if (opts.chunkSize !== undefined) {
          if (!/^\d+$/.test(opts.chunkSize)) throw new UsageError(`--chunk-size wants KiB as an integer, got ${JSON.stringify(opts.chunkSize)}`);
          chunkSize = Number(opts.chunkSize) * 1024;
        }
        const images = opts.image.map((s) => parseNamed('image', s));
        const blobs = opts.blob.map((s) => parseNamed('blob', s));
        const items = parseSpecs(specs, opts.archiveName);
        for (const it of items) {
          if (it.kind !== 'pxar') continue;
          let st;
          try {
            st = statSync(it.path);
          } catch {
            throw new UsageError(`backup source ${it.path} does not exist`);
          }
          if (!st.isDirectory()) throw new UsageError(`backup source ${it.path} is not a directory (use --image or --blob for files)`);
        }
        const hasPxar = items.some((i) => i.kind === 'pxar');

        if (items.length === 0 && images.length === 0 && blobs.length === 0) {
          throw new UsageError('nothing to back up: give a source directory, --image or --blob');
        }
        checkChunkSize(chunkSize ?? DEFAULT_CHUNK_SIZE);
        if (!opts.lazyChunkDirs && !existsSync(join(repo, '.chunks')) && g.outputFormat === 'text') {
          process.stderr.write(`pbsfs: creating a new datastore in ${repo} (with all 65536 chunk directories, as PBS does)\n`);
        }
        const warnings: string[] = [];
        let bar: cliProgress.SingleBar | undefined;
        if (isInteractive(process.stderr) && g.outputFormat === 'text') {
          bar = new cliProgress.SingleBar(
            {
              stream: process.stderr,
              format: 'backup {read} read | {files} entries | {chunks} chunks ({newChunks} new) | dedup {dedup}',
              hideCursor: true,
              clearOnComplete: true,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(0, 0, progressLine({ bytes: 0, files: 0, chunks: undefined as never }));
        }
        const started = performance.now();
        let result: BackupResult;
        try {
          result = runBackup({
            repository: repo,
            ns: parseNamespace(g.ns ?? ''),
            backupType: type as BackupType,
            backupId,
            ...(opts.backupTime !== undefined ? { backupTime: parseBackupTime(opts.backupTime) } : {}),
            cryptMode: mode,
            ...(crypt ? { crypt } : {}),
            items,
            split: Boolean(opts.split),
            ...(chunkSize !== undefined ? { chunkSize } : {}),
            images,
            blobs,
            ...(masterKeyCiphertext ? { masterKeyCiphertext } : {}),
            xattrs: opts.xattrs,
            allFileSystems: Boolean(opts.allFileSystems),
            catalog: opts.catalog,
            ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
            prefixDirs: opts.lazyChunkDirs ? 'lazy' : 'all',
            onWarning: (m) => warnings.push(m),
            onProgress: (p) => bar?.update(0, progressLine(p)),
          });
        } finally {
          bar?.stop();
        }
        const seconds = (performance.now() - started) / 1000;
        for (const w of warnings) process.stderr.write(`pbsfs: warning: ${w}\n`);
        if (hasPxar && opts.xattrs && !result.attrsRecorded) {
          process.stderr.write('pbsfs: warning: getfattr not found; xattrs, ACLs and file capabilities were not recorded\n');
        }
        const json = {
          snapshot: result.snapshot,
          path: result.path,
          'backup-type': type,
          'backup-id': backupId,
          'backup-time': result.manifest.backupTime,
          files: result.manifest.files.map((f) => ({ filename: f.filename, 'crypt-mode': f.cryptMode, size: f.size, csum: f.csum })),
          chunks: result.chunks,
          entries: result.walk ?? null,
          warnings,
          seconds: Number(seconds.toFixed(3)),
        };
        printResult(g, json, () => summary(result, seconds));
      }),
    );
}
