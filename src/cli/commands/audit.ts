/**
 * `pbsfs audit`: the encryption compliance view of a datastore (src/audit/audit.ts). Exit status
 * 0 when nothing is flagged, 1 when something is (for cron and monitoring checks), 2 or more
 * when the audit itself could not run.
 */
import type { Command } from 'commander';
import { auditDatastore, type AuditReport, type AuditSnapshot } from '../../audit/audit.js';
import { loadKeyFile } from '../../crypto/key-config.js';
import { UsageError } from '../../errors.js';
import { parseNamespace } from '../../store/backup-ref.js';
import { openRepositoryArg } from '../open-repositories.js';
import { formatBytes } from '../../util/bytes.js';
import { action, globalOptions, printResult, renderTable } from '../context.js';

function shortFp(fp: string | null): string {
  return fp === null ? '-' : fp.split(':').slice(0, 8).join(':');
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function snapshotLabel(s: AuditSnapshot): string {
  return s.ns === '' ? s.snapshot : `${s.ns}:${s.snapshot}`;
}

function renderReport(r: AuditReport): string {
  const out: string[] = [];
  const rows: string[][] = [['Snapshot', 'Mode', 'Key', 'Recovery', 'Signature', 'Size', 'Flags']];
  for (const s of r.snapshots) {
    rows.push([
      snapshotLabel(s),
      s['crypt-mode'] ?? (s.complete ? '?' : 'incomplete'),
      shortFp(s['key-fingerprint']),
      s['master-key-blob'] ? 'yes' : 'no',
      s.signature ?? '-',
      s.size === null ? '-' : formatBytes(s.size),
      s.flags.length === 0 ? 'ok' : s.flags.join(','),
    ]);
  }
  out.push(r.snapshots.length === 0 ? 'No snapshots found.' : renderTable(rows));

  if (r.keys.length > 0) {
    const krows: string[][] = [['Key fingerprint', 'Given key', 'Snapshots', 'Size', 'Modes', 'Groups']];
    for (const k of r.keys) {
      krows.push([
        k['key-fingerprint'] ?? '(no key)',
        k['matches-given-key'] === null ? '-' : k['matches-given-key'] ? 'yes' : 'no',
        String(k.snapshots),
        formatBytes(k.size),
        Object.entries(k['crypt-modes'])
          .map(([m, n]) => `${m} ${n}`)
          .join(', '),
        k.groups.join(' '),
      ]);
    }
    out.push('', 'By key:', renderTable(krows));
  }

  if (r.findings.length > 0) {
    out.push('', 'Findings:');
    for (const f of r.findings) out.push(`  ${f.flag}: ${f.ns === '' ? '' : `${f.ns}:`}${f.target}: ${f.message}`);
  }
  const scope = r.namespace === null ? 'datastore' : `namespace ${r.namespace}`;
  const key = r['given-key-fingerprint'] === null ? 'no key given' : `checked against key ${shortFp(r['given-key-fingerprint'])}`;
  out.push(
    '',
    r.findings.length === 0
      ? `${scope}: ${plural(r.summary.snapshots, 'snapshot')} in ${plural(r.summary.groups, 'group')}, nothing flagged (${key}).`
      : `${scope}: ${plural(r.summary.snapshots, 'snapshot')} in ${plural(r.summary.groups, 'group')}, ${r.summary['flagged-snapshots']} flagged, ${plural(r.summary.findings, 'finding')} (${key}).`,
  );
  return out.join('\n');
}

export function register(program: Command): void {
  program
    .command('audit')
    .description(
      'encryption audit from the manifests only: crypt mode, key fingerprint, master-key recovery blob and signature of every snapshot; exit 1 when something is flagged',
    )
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const g = globalOptions(cmd);
        if (g.masterKeyfile !== undefined) {
          throw new UsageError('audit checks fingerprints and signatures against an encryption key: give --keyfile, not --master-keyfile');
        }
        const ns = parseNamespace(g.ns ?? '');
        const ds = await openRepositoryArg(g);
        const crypt = g.keyfile !== undefined ? (await loadKeyFile(g.keyfile)).crypt : undefined;
        const report = await auditDatastore(ds, { ns, ...(crypt ? { crypt } : {}) });
        printResult(g, report, () => renderReport(report));
        if (report.findings.length > 0) process.exitCode = 1;
      }),
    );
}
