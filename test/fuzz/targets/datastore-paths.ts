/**
 * Datastore paths: snapshot refs, group refs, namespaces and directory names from the command
 * line or from a datastore, and a datastore listing over a temp directory populated with the
 * input's hostile names (dirs, files, symlinks). Listings must never yield an invalid name nor
 * anything reached through a symlink.
 */
import { lstatSync, mkdirSync, realpathSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { isPbsfsError } from '../../../src/errors.js';
import {
  formatSnapshotRef,
  isBackupType,
  isValidArchiveFileName,
  isValidBackupId,
  namespaceRelPath,
  parseGroupRef,
  parseNamespace,
  parseSnapshotDirName,
  parseSnapshotRef,
  snapshotRelPath,
  type Namespace,
} from '../../../src/store/backup-ref.js';
import { LocalDatastore } from '../../../src/store/local-datastore.js';
import type { FuzzTarget, Seed } from '../framework.js';
import { datastoreDir } from '../paths.js';
import { check, expectedSnapshots } from './common.js';

const MAX_LINES = 48;

function typed(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!isPbsfsError(e)) throw e;
  }
}

function safeRel(rel: string, what: string): void {
  check(!rel.startsWith('/') && !rel.split('/').some((c) => c === '..' || c === '.' || c === ''), `${what} ${JSON.stringify(rel)} is not a safe relative path`);
}

/** The string parsers, with round-trip checks. */
function parseLine(s: string): void {
  typed(() => {
    const ref = parseSnapshotRef(s);
    const text = formatSnapshotRef(ref);
    const back = parseSnapshotRef(text);
    check(back.type === ref.type && back.id === ref.id && back.time === ref.time, `snapshot ref ${JSON.stringify(s)} does not survive a round trip`);
    safeRel(snapshotRelPath([], ref), 'snapshot path');
  });
  typed(() => {
    const g = parseGroupRef(s);
    check(isBackupType(g.type) && isValidBackupId(g.id), `group ${JSON.stringify(s)} accepted with a bad part`);
  });
  typed(() => {
    const ns = parseNamespace(s);
    for (const c of ns) check(isValidBackupId(c), `namespace component ${JSON.stringify(c)} accepted`);
    if (ns.length > 0) safeRel(namespaceRelPath(ns), 'namespace path');
  });
  const t = parseSnapshotDirName(s);
  if (t !== undefined) check(Number.isSafeInteger(t) && t >= 1, `directory name ${JSON.stringify(s)} gives time ${t}`);
  isValidArchiveFileName(s);
}

/** Creates the input's entries below `root`; what the file system refuses is skipped. */
function populate(root: string, lines: Buffer[]): void {
  const rootBuf = Buffer.from(root);
  const SEP = Buffer.from(' -> ');
  for (const raw of lines) {
    let line = raw;
    let target: Buffer | undefined;
    const arrow = line.indexOf(SEP);
    if (arrow >= 0) {
      target = line.subarray(arrow + SEP.length);
      line = line.subarray(0, arrow);
    }
    const isDir = line[line.length - 1] === 0x2f;
    const comps: Buffer[] = [];
    let escapes = false;
    let start = 0;
    for (let i = 0; i <= line.length; i++) {
      if (i === line.length || line[i] === 0x2f) {
        const c = line.subarray(start, i);
        start = i + 1;
        if (c.length === 0 || (c.length === 1 && c[0] === 0x2e)) continue;
        if (c.length === 2 && c[0] === 0x2e && c[1] === 0x2e) escapes = true; // never outside the temp root
        comps.push(c);
      }
    }
    if (escapes || comps.length === 0 || comps.some((c) => c.includes(0))) continue;
    const path = (n: number): Buffer => Buffer.concat([rootBuf, ...comps.slice(0, n).flatMap((c) => [Buffer.from('/'), c])]);
    try {
      if (comps.length > 1) mkdirSync(path(comps.length - 1), { recursive: true });
      const p = path(comps.length);
      if (target !== undefined && !target.includes(0) && target.length > 0) symlinkSync(target, p);
      else if (isDir) mkdirSync(p, { recursive: true });
      else writeFileSync(p, line.subarray(0, 16));
    } catch {
      // EEXIST, ENOTDIR, ENAMETOOLONG...: the file system said no, nothing to test
    }
  }
}

/** A listed relative path must be a real (non-symlink) file or directory inside the root. */
function mustBeReal(root: string, rel: string, dir: boolean): void {
  safeRel(rel, 'listed path');
  let st;
  try {
    st = lstatSync(join(root, rel));
  } catch {
    return; // removed by the input itself (e.g. a file replaced by a dir): not our question
  }
  check(!st.isSymbolicLink(), `listing followed the symlink ${rel}`);
  const real = realpathSync(join(root, rel));
  check(real.startsWith(realpathSync(root) + '/'), `listed ${rel} resolves to ${real}, outside the datastore`);
  check(dir ? st.isDirectory() : st.isFile(), `listed ${rel} is not a ${dir ? 'directory' : 'regular file'}`);
}

async function listAll(root: string, groupLines: string[]): Promise<void> {
  const ds = await LocalDatastore.open(root);
  const skips: string[] = [];
  const nss: Namespace[] = [[], ...(await ds.listNamespaces([], (p) => skips.push(p)))];
  for (const ns of nss.slice(0, 16)) {
    for (const c of ns) check(isValidBackupId(c), `listed namespace component ${JSON.stringify(c)}`);
    if (ns.length > 0) mustBeReal(root, namespaceRelPath(ns), true);
    const groups = await ds.listGroups(ns);
    for (const g of groups) check(isBackupType(g.type) && isValidBackupId(g.id), `listed group ${g.type}/${g.id}`);
    const snaps = await ds.listSnapshots(ns);
    for (const s of snaps.slice(0, 32)) {
      const rel = snapshotRelPath(ns, s);
      mustBeReal(root, rel, true);
      const files = s.complete ? await ds.listSnapshotFiles(ns, s) : s.files;
      for (const f of files) {
        check(isValidArchiveFileName(f) || f === 'index.json.blob', `listed file ${JSON.stringify(f)}`);
        mustBeReal(root, `${rel}/${f}`, false);
      }
      check(await ds.hasSnapshot(ns, s), `listed snapshot ${rel} is not found again`);
      try {
        await ds.readSnapshotFile(ns, s, 'index.json.blob', 4096);
      } catch (e) {
        if (!isPbsfsError(e)) throw e;
      }
    }
    for (const g of groupLines) {
      try {
        await ds.listSnapshots(ns, parseGroupRef(g));
      } catch (e) {
        if (!isPbsfsError(e)) throw e;
      }
    }
  }
}

/** The vector datastore's layout as input lines (directories end in '/'). */
function layoutSeed(): Buffer {
  const lines: string[] = [];
  const walk = (dir: string, rel: string): void => {
    for (const n of readdirSync(dir).sort()) {
      if (n === '.chunks') continue;
      const r = rel ? `${rel}/${n}` : n;
      if (statSync(join(dir, n)).isDirectory()) {
        lines.push(`${r}/`);
        walk(join(dir, n), r);
      } else lines.push(r);
    }
  };
  walk(datastoreDir, '');
  return Buffer.from(lines.join('\n'));
}

const TOKENS = ['ns', 'vm', 'ct', 'host', '100', 'dev', '..', '.', '-x', '.hidden', 'a b', 'é', 'x'.repeat(300), '2024-06-01T10:00:00Z',
  '2024-06-01T10:00:00+02:00', '1970-01-01T00:00:00Z', '2024-13-01T10:00:00Z', 'index.json.blob', 'root.pxar.didx', 'a.fidx', 'x.blob.tmp_1',
  'owner', 'notes', '.lock', '', ' -> /etc', ' -> ..', ' -> vm'];
const lineArb = fc.array(fc.constantFrom(...TOKENS), { minLength: 1, maxLength: 7 }).chain((parts) =>
  fc.constantFrom('', '/').map((end) => parts.join('/') + end),
);

export const datastorePathsTarget: FuzzTarget = {
  name: 'datastore-paths',
  description: 'snapshot refs, namespaces, and datastore listings over hostile names',
  async prepare() {
    const base = mkdtempSync(join(tmpdir(), 'pbsfs-fuzz-ds-'));
    let n = 0;
    const refs = expectedSnapshots().map((s) => s.path.replace(/^(ns\/[^/]+\/)+/, ''));
    const seeds: Seed[] = [
      { name: 'datastore/store (layout)', data: layoutSeed() },
      { name: 'datastore/expected.json (snapshot refs)', data: Buffer.from(refs.join('\n')) },
      {
        name: 'hostile layout',
        data: Buffer.from(
          ['vm/100/2024-06-01T10:00:00Z/index.json.blob', 'vm/100/2024-06-01T10:00:00Z/x.fidx -> /etc/passwd', 'vm/evil -> /tmp',
            'ns/dev -> ..', 'ns/a/ns/b/host/h/2024-06-01T10:00:00Z/', 'host/.x/', 'ct/-1/2024-06-01T10:00:00Z/', 'vm/100/2024-06-01T10:00:00Z.tmp_1/'].join('\n'),
        ),
      },
    ];
    return {
      seeds,
      structured: fc.array(lineArb, { maxLength: 24 }).map((l) => Buffer.from(l.join('\n'))),
      maxInputBytes: 64 * 1024,
      async decode(input) {
        const lines = input.toString('utf8').split('\n').slice(0, MAX_LINES);
        for (const l of lines) parseLine(l);
        const root = join(base, `ds${n++}`);
        mkdirSync(join(root, '.chunks'), { recursive: true });
        try {
          const raw: Buffer[] = [];
          let s = 0;
          for (let i = 0; i <= input.length && raw.length < MAX_LINES; i++) {
            if (i === input.length || input[i] === 0x0a) {
              raw.push(input.subarray(s, Math.min(i, s + 1024)));
              s = i + 1;
            }
          }
          populate(root, raw);
          await listAll(root, lines.slice(0, 8));
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      },
      async cleanup() {
        rmSync(base, { recursive: true, force: true });
      },
    };
  },
};
