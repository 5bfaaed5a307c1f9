/**
 * RFC 3339 timestamps as PBS writes them.
 *
 * Key files use local time with a numeric `±HH:MM` offset (never `Z`) and whole seconds;
 * snapshot names use UTC with `Z`. The parser accepts what the upstream parser accepts: exactly
 * 20 characters ending in `Z`, or 25 characters ending in `±HH:MM`.
 */
import { FormatError } from '../errors.js';

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** Local-time form with numeric offset, e.g. "2024-06-05T16:24:36+02:00" (or "+00:00"). */
export function formatRfc3339Local(epochSeconds: number): string {
  const d = new Date(epochSeconds * 1000);
  if (Number.isNaN(d.getTime()) || d.getFullYear() < 0 || d.getFullYear() > 9999) {
    throw new FormatError(`timestamp ${epochSeconds} is out of range for RFC 3339`);
  }
  const off = -d.getTimezoneOffset(); // minutes east of UTC
  const sign = off < 0 ? '-' : '+';
  const a = Math.abs(off);
  return (
    `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    `${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`
  );
}

/** UTC form with `Z`, e.g. "2024-06-05T10:20:30Z" (snapshot directory names). */
export function formatRfc3339Utc(epochSeconds: number): string {
  const d = new Date(epochSeconds * 1000);
  if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 0 || d.getUTCFullYear() > 9999) {
    throw new FormatError(`timestamp ${epochSeconds} is out of range for RFC 3339`);
  }
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}Z`
  );
}

const RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:(Z)|([+-])(\d{2}):(\d{2}))$/;

/** Parses to epoch seconds; throws FormatError (naming `what`) on anything else. */
export function parseRfc3339(s: string, what = 'timestamp'): number {
  const m = RE.exec(s);
  const bad = (): never => {
    throw new FormatError(`${what} is not an RFC 3339 time: ${JSON.stringify(s.slice(0, 60))}`);
  };
  if (!m) return bad();
  const [y, mo, d, h, mi, se] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]));
  if (mo! < 1 || mo! > 12 || d! < 1 || d! > 31 || h! > 23 || mi! > 59 || se! > 60) return bad();
  let offset = 0;
  if (m[7] === undefined) {
    const oh = Number(m[9]);
    const om = Number(m[10]);
    if (oh > 23 || om > 59) return bad();
    offset = (oh * 60 + om) * 60 * (m[8] === '-' ? -1 : 1);
  }
  // Date.UTC maps years 0..99 to 1900..1999; setUTCFullYear does not.
  const dt = new Date(0);
  dt.setUTCFullYear(y!, mo! - 1, d!);
  dt.setUTCHours(h!, mi!, se!, 0);
  return dt.getTime() / 1000 - offset;
}
