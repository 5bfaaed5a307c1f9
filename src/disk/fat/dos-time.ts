/**
 * DOS date and time fields (FAT directory entries, and exFAT timestamps, which pack the same
 * two 16-bit fields into one 32-bit value). They hold a wall-clock time without a zone; FAT says
 * nothing about which zone, so pbsfs reads the fields as UTC (what `mount -o tz=UTC` and
 * The Sleuth Kit under TZ=UTC show). exFAT adds a UTC offset, applied where it is marked valid.
 */
import type { FsTime } from '../filesystem.js';

export const NO_TIME: FsTime = { sec: 0, nsec: 0 };

/**
 * Seconds since the epoch of the wall-clock fields read as UTC, or undefined for a zero or
 * impossible date (month 0 or above 12, day 0, hour above 23, minute above 59, seconds above 59).
 */
export function dosSeconds(date: number, time: number): number | undefined {
  if (date === 0) return undefined;
  const year = 1980 + (date >>> 9);
  const month = (date >>> 5) & 0x0f;
  const day = date & 0x1f;
  const hour = time >>> 11;
  const minute = (time >>> 5) & 0x3f;
  const second = (time & 0x1f) * 2;
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  // Day 31 of a 30-day month rolls over, as the arithmetic of other readers does.
  return Date.UTC(year, month - 1, day, hour, minute, second) / 1000;
}

/**
 * A DOS time with its optional hundredths byte (create time in FAT, create and modify in exFAT;
 * 0..199, units of 10 ms) and exFAT's UTC offset in minutes (0 when the stored time is taken as
 * UTC). Impossible dates read as the epoch.
 */
export function dosTime(date: number, time: number, tenMs = 0, utcOffsetMinutes = 0): FsTime {
  const s = dosSeconds(date, time);
  if (s === undefined) return NO_TIME;
  const cs = tenMs <= 199 ? tenMs : 0;
  return { sec: s + Math.floor(cs / 100) - utcOffsetMinutes * 60, nsec: (cs % 100) * 10_000_000 };
}
