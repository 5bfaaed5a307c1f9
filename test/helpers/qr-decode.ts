/**
 * A small QR decoder for clean, synthetic module matrices (no image processing, no error
 * correction): reads format info, unmasks, de-interleaves the data codewords and parses the
 * numeric / alphanumeric / byte segments. Used to prove that a paper key's QR code (ours or
 * upstream's qrencode output) carries exactly the intended text. The block layout tables and
 * the function-pattern map come from the `qrcode` package; they are fixed by the QR standard.
 */
import { createRequire } from 'node:module';
import QRCode from 'qrcode';

const require = createRequire(import.meta.url);
const ecc = require('qrcode/lib/core/error-correction-code.js') as {
  getBlocksCount(version: number, level: { bit: number }): number;
  getTotalCodewordsCount(version: number, level: { bit: number }): number;
};
const utils = require('qrcode/lib/core/utils.js') as { getSymbolTotalCodewords(version: number): number };
const ecLevel = require('qrcode/lib/core/error-correction-level.js') as Record<'L' | 'M' | 'Q' | 'H', { bit: number }>;

export type Matrix = boolean[][]; // [row][col], true = dark

/** utf8 half-block art (dark = block) back to a matrix of the given width. */
export function matrixFromBlockArt(lines: string[]): Matrix {
  const rows: boolean[][] = [];
  for (const l of lines) {
    const chars = [...l];
    rows.push(chars.map((c) => c === '\u2588' || c === '\u2580'));
    rows.push(chars.map((c) => c === '\u2588' || c === '\u2584'));
  }
  const n = Math.max(...lines.map((l) => [...l].length));
  return rows.slice(0, n).map((r) => Array.from({ length: n }, (_, i) => r[i] ?? false));
}

/** SVG made of 1x1 <rect> elements (qrencode) or of "Mx yhNv1h-Nz" runs (ours). */
export function matrixFromSvg(svg: string): Matrix {
  const vb = /viewBox="0 0 (\d+) (\d+)"/.exec(svg);
  if (!vb) throw new Error('no viewBox');
  const n = Number(vb[1]);
  const m: Matrix = Array.from({ length: n }, () => Array<boolean>(n).fill(false));
  for (const r of svg.matchAll(/<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)" fill="#000000"\/>/g)) {
    const [x, y, w, h] = [r[1], r[2], r[3], r[4]].map(Number) as [number, number, number, number];
    for (let yy = y; yy < y + h; yy++) for (let xx = x; xx < x + w; xx++) m[yy]![xx] = true;
  }
  for (const p of svg.matchAll(/M(\d+) (\d+)h(\d+)v1h-\d+z/g)) {
    const [x, y, w] = [p[1], p[2], p[3]].map(Number) as [number, number, number];
    for (let xx = x; xx < x + w; xx++) m[y]![xx] = true;
  }
  return m;
}

const MASKS: ((i: number, j: number) => boolean)[] = [
  (i, j) => (i + j) % 2 === 0,
  (i) => i % 2 === 0,
  (_i, j) => j % 3 === 0,
  (i, j) => (i + j) % 3 === 0,
  (i, j) => (Math.floor(i / 2) + Math.floor(j / 3)) % 2 === 0,
  (i, j) => ((i * j) % 2) + ((i * j) % 3) === 0,
  (i, j) => (((i * j) % 2) + ((i * j) % 3)) % 2 === 0,
  (i, j) => (((i * j) % 3) + ((i + j) % 2)) % 2 === 0,
];
// The package compares level objects by identity: use its own.
const LEVEL_BY_BITS: Record<number, { bit: number }> = { 0: ecLevel.M, 1: ecLevel.L, 2: ecLevel.H, 3: ecLevel.Q };
const ALNUM = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:';

/** Decodes the payload bytes of a QR matrix; returns them as a Buffer. */
export function decodeQr(m: Matrix): { data: Buffer; version: number; level: number; mask: number } {
  const n = m.length;
  const version = (n - 17) / 4;
  if (!Number.isInteger(version) || version < 1 || version > 40) throw new Error(`bad QR size ${n}`);
  // Format info, vertical copy next to the top-left finder (column 8).
  let raw = 0;
  for (let i = 0; i < 15; i++) {
    const row = i < 6 ? i : i < 8 ? i + 1 : n - 15 + i;
    if (m[row]![8]) raw |= 1 << i;
  }
  const fmt = (raw ^ 0x5412) >> 10;
  const levelBits = fmt >> 3;
  const mask = fmt & 7;
  const level = LEVEL_BY_BITS[levelBits]!;
  // Which modules are function patterns: any symbol of this version has the same map.
  const ref = QRCode.create('x', { version, errorCorrectionLevel: 'L' }).modules as unknown as {
    isReserved(r: number, c: number): number | boolean;
  };
  const bits: number[] = [];
  let upward = true;
  for (let col = n - 1; col > 0; col -= 2) {
    if (col === 6) col--;
    for (let k = 0; k < n; k++) {
      const row = upward ? n - 1 - k : k;
      for (const c of [col, col - 1]) {
        if (ref.isReserved(row, c)) continue;
        bits.push((m[row]![c] ? 1 : 0) ^ (MASKS[mask]!(row, c) ? 1 : 0));
      }
    }
    upward = !upward;
  }
  const total = utils.getSymbolTotalCodewords(version);
  const codewords: number[] = [];
  for (let i = 0; i < total; i++) {
    let b = 0;
    for (let k = 0; k < 8; k++) b = (b << 1) | (bits[i * 8 + k] ?? 0);
    codewords.push(b);
  }
  const blocks = ecc.getBlocksCount(version, level);
  const dataTotal = total - ecc.getTotalCodewordsCount(version, level);
  const small = Math.floor(dataTotal / blocks);
  const bigBlocks = dataTotal % blocks;
  const sizes = Array.from({ length: blocks }, (_, b) => small + (b >= blocks - bigBlocks ? 1 : 0));
  const perBlock: number[][] = sizes.map(() => []);
  let idx = 0;
  for (let i = 0; i < small + 1; i++) {
    for (let b = 0; b < blocks; b++) if (i < sizes[b]!) perBlock[b]!.push(codewords[idx++]!);
  }
  const data = perBlock.flat();
  // Segment parsing.
  let pos = 0;
  const take = (k: number): number => {
    let v = 0;
    for (let i = 0; i < k; i++) {
      const byte = data[(pos + i) >> 3] ?? 0;
      v = v * 2 + ((byte >> (7 - ((pos + i) & 7))) & 1);
    }
    pos += k;
    return v;
  };
  const cc = (small: number, mid: number, large: number): number => (version <= 9 ? small : version <= 26 ? mid : large);
  const out: number[] = [];
  while (pos + 4 <= data.length * 8) {
    const mode = take(4);
    if (mode === 0) break;
    if (mode === 4) {
      const len = take(cc(8, 16, 16));
      for (let i = 0; i < len; i++) out.push(take(8));
    } else if (mode === 2) {
      let len = take(cc(9, 11, 13));
      let s = '';
      while (len >= 2) {
        const v = take(11);
        s += ALNUM[Math.floor(v / 45)]! + ALNUM[v % 45]!;
        len -= 2;
      }
      if (len === 1) s += ALNUM[take(6)]!;
      out.push(...Buffer.from(s, 'latin1'));
    } else if (mode === 1) {
      let len = take(cc(10, 12, 14));
      let s = '';
      while (len >= 3) {
        s += String(take(10)).padStart(3, '0');
        len -= 3;
      }
      if (len === 2) s += String(take(7)).padStart(2, '0');
      else if (len === 1) s += String(take(4));
      out.push(...Buffer.from(s, 'latin1'));
    } else if (mode === 7) {
      const first = take(8);
      if (first & 0x80) take(first & 0x40 ? 16 : 8); // ECI designator (ignored; we expect UTF-8)
    } else {
      throw new Error(`unsupported QR segment mode ${mode}`);
    }
  }
  return { data: Buffer.from(out), version, level: levelBits, mask };
}
