/**
 * The two JSON text forms PBS uses for manifests (spec 8.3, 8.4), with object keys sorted by the
 * bytes of their UTF-8 encoding (not UTF-16 code units, and not JS's integer-keys-first order,
 * which is why neither form can simply be JSON.stringify of an object).
 *
 * - canonical: no whitespace; `null` is refused (it must not occur in the signed part).
 * - pretty: 2-space indent, `": "` after keys, `{}` / `[]` when empty, no trailing newline
 *   (serde_json's pretty printer).
 */
import { FormatError } from '../errors.js';

export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function sortedKeys(o: object): string[] {
  return Object.keys(o).sort(compareUtf8);
}

function scalar(v: unknown, where: string): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new FormatError(`${where}: number ${v} cannot be written as JSON`);
    return JSON.stringify(v);
  }
  if (typeof v === 'bigint') return v.toString();
  throw new FormatError(`${where}: a ${typeof v} cannot be written as JSON`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Compact JSON with byte-sorted keys; a null anywhere is an error (spec 8.4). */
export function canonicalJson(v: unknown, where = 'value'): string {
  if (v === null || v === undefined) throw new FormatError(`${where}: null is not allowed in the signed part of a manifest`);
  if (Array.isArray(v)) return '[' + v.map((x, i) => canonicalJson(x, `${where}[${i}]`)).join(',') + ']';
  if (isPlainObject(v)) {
    return (
      '{' +
      sortedKeys(v)
        .map((k) => JSON.stringify(k) + ':' + canonicalJson(v[k], `${where}.${k}`))
        .join(',') +
      '}'
    );
  }
  return scalar(v, where);
}

/** serde_json-style pretty JSON with byte-sorted keys. */
export function prettyJson(v: unknown, indent = ''): string {
  if (v === null) return 'null';
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return '[\n' + v.map((x) => inner + prettyJson(x, inner)).join(',\n') + '\n' + indent + ']';
  }
  if (isPlainObject(v)) {
    const keys = sortedKeys(v).filter((k) => v[k] !== undefined);
    if (keys.length === 0) return '{}';
    return '{\n' + keys.map((k) => inner + JSON.stringify(k) + ': ' + prettyJson(v[k], inner)).join(',\n') + '\n' + indent + '}';
  }
  return scalar(v, 'value');
}
