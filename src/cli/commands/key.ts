/**
 * `pbsfs key …`: manage PBS key files (spec sections 4 to 6).
 *
 * Passphrases never come from the command line. The passphrase of the key being read or created
 * comes from PBS_ENCRYPTION_PASSWORD[_FD|_FILE|_CMD] or a terminal prompt; a replacement
 * passphrase (change-passphrase, import-with-master-key) from PBS_NEW_ENCRYPTION_PASSWORD[…] or
 * a prompt asked twice.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { action, globalOptions, printResult, renderTable } from '../context.js';
import { FormatError, UsageError, fromSystemError } from '../../errors.js';
import { formatFingerprint } from '../../crypto/crypt-config.js';
import {
  createKeyConfig,
  decryptKeyConfig,
  kdfName,
  loadKeyFile,
  parseKeyConfig,
  serializeKeyConfig,
  type KdfName,
  type KeyConfig,
} from '../../crypto/key-config.js';
import { getPassphrase } from '../../crypto/passphrase.js';
import { generatePaperKey, parsePaperKey, type PaperKeyFormat } from '../../crypto/paperkey.js';
import {
  createMasterKeyPair,
  masterPublicKeyInfo,
  openMasterPrivateKey,
  readMasterKeyFile,
  recoverKeyFromMasterKey,
} from '../../crypto/master-key.js';
import { decodeBlob, parseBlobHeader, UNCOMPRESSED_BLOB_MAGIC, COMPRESSED_BLOB_MAGIC } from '../../blob/data-blob.js';
import { parseRfc3339 } from '../../util/rfc3339.js';
import { defaultKeyPath } from '../key-file-arg.js';

const KDFS: readonly KdfName[] = ['scrypt', 'pbkdf2', 'none'];
const NEW_PASSPHRASE_ENV = 'PBS_NEW_ENCRYPTION_PASSWORD';

export { defaultKeyPath };

function parseKdf(s: string | undefined): KdfName {
  const k = (s ?? 'scrypt').toLowerCase() as KdfName;
  if (!KDFS.includes(k)) throw new UsageError(`--kdf must be one of ${KDFS.join(', ')}, got ${JSON.stringify(s)}`);
  return k;
}

/** Creates `path` with mode 0600; refuses to overwrite. */
async function writeNewFile(path: string, content: string | Buffer): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UsageError('refusing to overwrite an existing file', { file: path });
    }
    throw fromSystemError(e, path, 'cannot create file');
  }
  try {
    await fh.writeFile(content);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(path, { force: true });
    throw fromSystemError(e, path, 'cannot write file');
  }
  await fh.close();
}

/** Replaces `path` atomically (temp file in the same directory, fsync, rename): never lost. */
async function replaceFile(path: string, content: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await writeNewFile(tmp, content);
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw fromSystemError(e, path, 'cannot replace file');
  }
}

async function readText(path: string, what: string): Promise<string> {
  try {
    const st = await stat(path);
    if (st.size > 16 * 1024 * 1024) throw new FormatError(`${what} is too large (${st.size} bytes)`, { file: path });
    return await readFile(path, 'utf8');
  } catch (e) {
    throw fromSystemError(e, path, `cannot read ${what}`);
  }
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of process.stdin) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > 16 * 1024 * 1024) throw new FormatError('input is too large', { file: 'stdin' });
    parts.push(b);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** The new passphrase for a key being written (asked twice on a terminal). */
function newPassphrase(envPrefix: string, prompt: string): Promise<string> {
  return getPassphrase({ envPrefix, prompt, confirm: true });
}

/** "Wed Jun  5 16:24:36 2024" (C locale %c) in local time. */
function formatCTime(epoch: number): string {
  const d = new Date(epoch * 1000);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getDay()]!;
  const mon = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getMonth()]!;
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${day} ${mon} ${String(d.getDate()).padStart(2)} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${d.getFullYear()}`;
}

/** What `key show` reports (upstream KeyInfo field names). */
export function keyInfo(path: string, kc: KeyConfig): Record<string, unknown> {
  const info: Record<string, unknown> = {
    path: JSON.stringify(path), // upstream prints the path in Rust debug form, quotes included
    kdf: kdfName(kc),
    created: parseRfc3339(kc.created, '"created"'),
    modified: parseRfc3339(kc.modified, '"modified"'),
  };
  if (kc.fingerprint !== undefined) info.fingerprint = kc.fingerprint;
  if (kc.hint !== undefined) info.hint = kc.hint;
  return info;
}

/** The global --output-format for paperkey: text or html (default html, like upstream). */
function paperKeyFormat(cmd: Command, local: string | undefined): PaperKeyFormat {
  let v = local;
  if (v === undefined) {
    let root: Command = cmd;
    while (root.parent) root = root.parent;
    const src = root.getOptionValueSource('outputFormat');
    v = src !== undefined && src !== 'default' ? String(root.opts().outputFormat) : 'html';
  }
  if (v !== 'text' && v !== 'html') throw new UsageError(`paperkey --output-format must be text or html, got ${JSON.stringify(v)}`);
  return v;
}

export function register(program: Command): void {
  const key = program.command('key').description('manage encryption keys: create, show, change passphrase, paper keys, RSA master key');

  key
    .command('create')
    .description('create a new encryption key file (mode 0600; never overwrites)')
    .argument('[file]', 'key file to create (default: ~/.config/proxmox-backup/encryption-key.json)')
    .option('--kdf <kdf>', 'scrypt (default), pbkdf2 or none', 'scrypt')
    .option('--hint <text>', 'password hint, stored in the file in plain text')
    .action(
      action(async (file: string | undefined, opts: { kdf?: string; hint?: string }, cmd: Command) => {
        const g = globalOptions(cmd);
        const kdf = parseKdf(opts.kdf);
        if (kdf === 'none' && opts.hint !== undefined) throw new UsageError('--hint makes no sense with --kdf none');
        const path = resolve(file ?? defaultKeyPath());
        if (file === undefined) await mkdir(dirname(path), { recursive: true, mode: 0o700 });
        await ensureAbsent(path);
        const passphrase = kdf === 'none' ? undefined : await newPassphrase('PBS_ENCRYPTION_PASSWORD', 'Encryption Key Password: ');
        const kc = await createKeyConfig(randomBytes(32), {
          kdf,
          ...(passphrase !== undefined ? { passphrase } : {}),
          ...(opts.hint !== undefined ? { hint: opts.hint } : {}),
        });
        await writeNewFile(path, serializeKeyConfig(kc));
        printResult(g, { path, kdf, fingerprint: kc.fingerprint }, () => `created ${path}\nfingerprint: ${kc.fingerprint}`);
      }),
    );

  key
    .command('show')
    .description('show kdf, creation and modification time, fingerprint and hint of a key file')
    .argument('[file]', 'key file (default: ~/.config/proxmox-backup/encryption-key.json)')
    .action(
      action(async (file: string | undefined, _opts: unknown, cmd: Command) => {
        const g = globalOptions(cmd);
        const path = file ?? defaultKeyPath();
        const kc = parseKeyConfig(await readText(path, 'key file'), path);
        const info = keyInfo(path, kc);
        printResult(g, info, () => {
          const rows: string[][] = [
            ['path', path],
            ['kdf', String(info.kdf)],
            ['created', formatCTime(info.created as number)],
            ['modified', formatCTime(info.modified as number)],
          ];
          if (kc.fingerprint !== undefined) rows.push(['fingerprint', kc.fingerprint]);
          if (kc.hint !== undefined) rows.push(['hint', kc.hint]);
          return renderTable(rows.map(([k, v]) => [`${k}:`, v!]));
        });
      }),
    );

  key
    .command('change-passphrase')
    .description(`re-wrap a key file with a new passphrase and/or kdf (atomic replace; new passphrase from ${NEW_PASSPHRASE_ENV}[_FD|_FILE|_CMD] or a prompt)`)
    .argument('[file]', 'key file (default: ~/.config/proxmox-backup/encryption-key.json)')
    .option('--kdf <kdf>', 'scrypt (default), pbkdf2 or none', 'scrypt')
    .option('--hint <text>', 'new password hint')
    .action(
      action(async (file: string | undefined, opts: { kdf?: string; hint?: string }, cmd: Command) => {
        const g = globalOptions(cmd);
        const kdf = parseKdf(opts.kdf);
        if (kdf === 'none' && opts.hint !== undefined) throw new UsageError('--hint makes no sense with --kdf none');
        const path = resolve(file ?? defaultKeyPath());
        const loaded = await loadKeyFile(path);
        const passphrase = kdf === 'none' ? undefined : await newPassphrase(NEW_PASSPHRASE_ENV, 'New Password: ');
        const kc = await createKeyConfig(loaded.crypt.encKey, {
          kdf,
          created: loaded.keyConfig.created,
          ...(passphrase !== undefined ? { passphrase } : {}),
          ...(opts.hint !== undefined ? { hint: opts.hint } : {}),
        });
        await replaceFile(path, serializeKeyConfig(kc));
        printResult(g, { path, kdf, fingerprint: kc.fingerprint }, () => `updated ${path} (kdf ${kdf})`);
      }),
    );

  key
    .command('paperkey')
    .description('print a paper key (key file or master private key) with QR codes, as text or html')
    .argument('[file]', 'key file or PEM private key (default: ~/.config/proxmox-backup/encryption-key.json)')
    .option('--subject <text>', 'a subject line printed on top')
    .option('--output-format <format>', 'text or html (default html)')
    .action(
      action(async (file: string | undefined, opts: { subject?: string; outputFormat?: string }, cmd: Command) => {
        const format = paperKeyFormat(cmd, opts.outputFormat);
        const path = file ?? defaultKeyPath();
        const out = generatePaperKey(await readText(path, 'key file'), {
          file: path,
          format,
          ...(opts.subject !== undefined ? { subject: opts.subject } : {}),
        });
        process.stdout.write(out);
      }),
    );

  key
    .command('import-paperkey')
    .description('rebuild a key file (or master private key PEM) from paper key text typed or scanned back in')
    .argument('<files...>', '[TEXTFILE|-] OUTFILE: the paper key text (default or "-": stdin) and the file to create')
    .option('--no-verify', 'do not decrypt a passphrase-protected key to check it')
    .action(
      action(async (files: string[], opts: { verify: boolean }, cmd: Command) => {
        const g = globalOptions(cmd);
        if (files.length > 2) throw new UsageError('give at most an input file and an output file');
        const input = files.length === 2 ? files[0]! : '-';
        const out = resolve(files[files.length - 1]!);
        const source = input === '-' ? 'stdin' : input;
        const text = input === '-' ? await readStdin() : await readText(input, 'paper key');
        const r = parsePaperKey(text, source);
        await ensureAbsent(out);
        if (r.kind === 'master-key') {
          // Check that the PEM is a readable key before writing it (asks for its passphrase).
          if (opts.verify) {
            await openMasterPrivateKey(r.pem, () => getPassphrase({ prompt: 'Master Key Password: ' }), source);
          }
          await writeNewFile(out, r.pem);
          printResult(g, { path: out, kind: 'master-key' }, () => `wrote master private key ${out}`);
          return;
        }
        let fingerprint = r.keyConfig.fingerprint;
        if (r.keyConfig.kdf === null || opts.verify) {
          // Without a KDF this costs nothing and catches typos (the fingerprint check).
          const d = await decryptKeyConfig(r.keyConfig, () => getPassphrase(), source);
          fingerprint = formatFingerprint(d.fingerprint);
        }
        await writeNewFile(out, serializeKeyConfig(r.keyConfig));
        printResult(g, { path: out, kind: 'key-config', fingerprint }, () =>
          `wrote ${out}${fingerprint !== undefined ? `\nfingerprint: ${fingerprint}` : ''}`,
        );
      }),
    );

  key
    .command('create-master-key')
    .description('create an RSA-4096 master key pair: master-public.pem and master-private.pem (AES-256-CBC encrypted PKCS#8)')
    .option('--dir <dir>', 'where to write the two files', '.')
    .action(
      action(async (opts: { dir: string }, cmd: Command) => {
        const g = globalOptions(cmd);
        const pubPath = resolve(opts.dir, 'master-public.pem');
        const privPath = resolve(opts.dir, 'master-private.pem');
        await ensureAbsent(pubPath);
        await ensureAbsent(privPath);
        const passphrase = await getPassphrase({ prompt: 'Master Key Password: ', confirm: true });
        if (Buffer.byteLength(passphrase, 'utf8') < 5) throw new UsageError('the passphrase is too short (at least 5 bytes)');
        const pair = await createMasterKeyPair(passphrase);
        await writeNewFile(privPath, pair.privatePem);
        await writeNewFile(pubPath, pair.publicPem);
        printResult(g, { public: pubPath, private: privPath }, () => `wrote ${pubPath}\nwrote ${privPath}`);
      }),
    );

  key
    .command('show-master-pubkey')
    .description('show modulus, exponent and length of an RSA master key (public or private PEM)')
    .argument('<pem>', 'master-public.pem')
    .action(
      action(async (pem: string, _opts: unknown, cmd: Command) => {
        const g = globalOptions(cmd);
        const info = masterPublicKeyInfo(await readMasterKeyFile(pem), pem);
        printResult(g, info, () => renderTable([['modulus:', info.modulus], ['exponent:', info.exponent], ['length:', String(info.length)]]));
      }),
    );

  key
    .command('import-with-master-key')
    .description(
      `recover a key file from a snapshot's rsa-encrypted.key.blob with the master private key (global --master-keyfile); new passphrase from ${NEW_PASSPHRASE_ENV}[…] or a prompt`,
    )
    .argument('<outfile>', 'key file to create')
    .requiredOption('--encrypted-keyfile <file>', 'rsa-encrypted.key.blob (or its decoded 512 bytes)')
    .option('--kdf <kdf>', 'scrypt (default), pbkdf2 or none', 'scrypt')
    .option('--hint <text>', 'password hint for the new key file')
    .action(
      action(async (outfile: string, opts: { encryptedKeyfile: string; kdf?: string; hint?: string }, cmd: Command) => {
        const g = globalOptions(cmd);
        if (g.masterKeyfile === undefined) throw new UsageError('give the master private key with --master-keyfile PEM');
        const kdf = parseKdf(opts.kdf);
        if (kdf === 'none' && opts.hint !== undefined) throw new UsageError('--hint makes no sense with --kdf none');
        const out = resolve(outfile);
        await ensureAbsent(out);
        let raw: Buffer;
        try {
          raw = await readFile(opts.encryptedKeyfile);
        } catch (e) {
          throw fromSystemError(e, opts.encryptedKeyfile, 'cannot read encrypted key file');
        }
        const magic = raw.subarray(0, 8);
        const payload =
          magic.equals(UNCOMPRESSED_BLOB_MAGIC) || magic.equals(COMPRESSED_BLOB_MAGIC)
            ? (parseBlobHeader(raw, opts.encryptedKeyfile), decodeBlob(raw, { name: opts.encryptedKeyfile, maxSize: 64 * 1024 }))
            : raw;
        const pem = await readMasterKeyFile(g.masterKeyfile);
        const r = await recoverKeyFromMasterKey(payload, pem, () => getPassphrase({ prompt: 'Master Key Password: ' }), {
          blobName: opts.encryptedKeyfile,
          pemName: g.masterKeyfile,
        });
        const passphrase = kdf === 'none' ? undefined : await newPassphrase(NEW_PASSPHRASE_ENV, 'New Password: ');
        const kc = await createKeyConfig(r.crypt.encKey, {
          kdf,
          created: r.keyConfig.created,
          ...(passphrase !== undefined ? { passphrase } : {}),
          ...(opts.hint !== undefined ? { hint: opts.hint } : {}),
        });
        await writeNewFile(out, serializeKeyConfig(kc));
        printResult(g, { path: out, kdf, fingerprint: kc.fingerprint }, () => `wrote ${out}\nfingerprint: ${kc.fingerprint}`);
      }),
    );
}

async function ensureAbsent(path: string): Promise<void> {
  try {
    await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fromSystemError(e, path, 'cannot check file');
  }
  throw new UsageError('refusing to overwrite an existing file', { file: path });
}
