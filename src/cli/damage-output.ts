/**
 * `--allow-damaged` as the commands show it: a warning when it starts, the damage report at the
 * end (text lines or JSON on stderr), exit status 1 when anything was read as zeros, and typed
 * errors that say zero-filled chunks were involved (damaged pxar metadata cannot be decoded).
 */
import { PbsfsError, rewrapError } from '../errors.js';
import { DamageReport, formatDamageEntry, type DamageEntry } from '../index/damage-report.js';
import { formatBytes } from '../util/bytes.js';
import type { GlobalOptions } from './context.js';

export const ALLOW_DAMAGED_HELP =
  'read unreadable chunks (missing, corrupt) as zeros instead of failing; every such range is reported on stderr at the end, and the exit status is 1 when any data was zero-filled';

export const ALLOW_DAMAGED_WARNING = 'pbsfs: warning: --allow-damaged: unreadable chunks will read as zeros and be reported\n';

/** A report (and the start warning on stderr) when the flag is given, else undefined. */
export function startDamageReport(allow: boolean | undefined, onDamage?: (e: DamageEntry) => void): DamageReport | undefined {
  if (!allow) return undefined;
  process.stderr.write(ALLOW_DAMAGED_WARNING);
  return new DamageReport(onDamage);
}

/** The report's text form, one line per damaged range, then a total (empty when clean). */
export function damageReportLines(report: DamageReport): string[] {
  if (report.count === 0) return [];
  return [
    ...report.entries().map((e) => `pbsfs: damaged: ${formatDamageEntry(e)}`),
    `pbsfs: ${report.count} unreadable chunk${report.count === 1 ? '' : 's'} (${formatBytes(report.bytes)}) read as zeros`,
  ];
}

/**
 * Prints the report on stderr (JSON lines, one entry each, in the JSON formats; nothing when
 * clean) and sets exit status 1 when data was zero-filled, unless an error already set one.
 */
export function finishDamageReport(g: GlobalOptions, report: DamageReport | undefined, opts: { text?: boolean } = {}): void {
  if (report === undefined) return;
  if (g.outputFormat === 'text' || opts.text === true) {
    for (const l of damageReportLines(report)) process.stderr.write(l + '\n');
  } else {
    for (const e of report.entries()) process.stderr.write(JSON.stringify({ damaged: e }) + '\n');
  }
  if (report.count > 0 && (process.exitCode === undefined || process.exitCode === 0)) process.exitCode = 1;
}

/**
 * An error of the same kind whose message adds that chunks were zero-filled before it (the
 * usual cause: a zeroed range inside pxar metadata, which no decoder can make sense of).
 */
export function withDamageNote(e: unknown, report: DamageReport | undefined): unknown {
  if (report === undefined || report.count === 0 || !(e instanceof PbsfsError)) return e;
  const note = ` (--allow-damaged read ${report.count} unreadable chunk${report.count === 1 ? '' : 's'} as zeros, listed above; zeros inside archive metadata cannot be decoded)`;
  return rewrapError(e, e.message + note, { cause: e }) ?? e;
}
