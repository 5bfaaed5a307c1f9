/**
 * Paper keys (spec section 5): a printable copy of a key file or of the RSA master private key,
 * with QR codes, in the upstream text and HTML layouts; and the way back from typed-in text.
 *
 * The QR payload is what upstream encodes: the pretty-printed KeyConfig JSON lines (without the
 * BEGIN/END marker lines) joined with "\n", or for a master key each block of PEM lines joined
 * with "\n". Error correction M, no margin. The QR symbols themselves (mode segmentation, mask)
 * may differ from upstream's `qrencode`; scanners read the same text.
 */
import QRCode from 'qrcode';
import { FormatError } from '../errors.js';
import { parseKeyConfig, serializeKeyConfigPretty, type KeyConfig } from './key-config.js';
import { formatRfc3339Local, parseRfc3339 } from '../util/rfc3339.js';

export const PAPERKEY_BEGIN = '-----BEGIN PROXMOX BACKUP KEY-----';
export const PAPERKEY_END = '-----END PROXMOX BACKUP KEY-----';

export type PaperKeyFormat = 'text' | 'html';

/** A module matrix: `dark(row, col)`. */
export interface QrMatrix {
  size: number;
  dark(row: number, col: number): boolean;
}

export function qrMatrix(text: string): QrMatrix {
  const qr = QRCode.create(text, { errorCorrectionLevel: 'M' });
  const m = qr.modules;
  return { size: m.size, dark: (r, c) => Boolean(m.get(r, c)) };
}

/**
 * Half-block text like `qrencode -t utf8i -m0`: two module rows per line, dark modules drawn as
 * block characters (for printing dark on light). Every line ends with "\n".
 */
export function renderQrText(m: QrMatrix): string {
  let out = '';
  for (let y = 0; y < m.size; y += 2) {
    for (let x = 0; x < m.size; x++) {
      const top = m.dark(y, x);
      const bottom = y + 1 < m.size && m.dark(y + 1, x);
      out += top ? (bottom ? '\u2588' : '\u2580') : bottom ? '\u2584' : ' ';
    }
    out += '\n';
  }
  return out;
}

/** A minimal SVG: white square, one black path with a 1x1 rectangle run per dark stretch. */
export function renderQrSvg(m: QrMatrix): string {
  const n = m.size;
  let d = '';
  for (let y = 0; y < n; y++) {
    let x = 0;
    while (x < n) {
      if (!m.dark(y, x)) {
        x++;
        continue;
      }
      const start = x;
      while (x < n && m.dark(y, x)) x++;
      d += `M${start} ${y}h${x - start}v1h-${x - start}z`;
    }
  }
  return (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' +
    `<svg width="${n}" height="${n}" viewBox="0 0 ${n} ${n}" shape-rendering="crispEdges" version="1.1" xmlns="http://www.w3.org/2000/svg">\n` +
    `<rect x="0" y="0" width="${n}" height="${n}" fill="#ffffff"/>\n` +
    `<path fill="#000000" d="${d}"/>\n` +
    '</svg>\n'
  );
}

function svgDataUri(text: string): string {
  const b64 = Buffer.from(renderQrSvg(qrMatrix(text)), 'utf8').toString('base64').replace(/=+$/, '');
  return `data:image/svg+xml;base64,${b64}`;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** What a paper key is made of: the printed lines, and whether they are a master key's PEM. */
export interface PaperKeySource {
  lines: string[];
  isMasterKey: boolean;
}

/** Classifies key file content (spec 5.1): RSA private key PEM, or a KeyConfig. */
export function paperKeySource(content: string, file: string): PaperKeySource {
  if (
    content.startsWith('-----BEGIN ENCRYPTED PRIVATE KEY-----\n') ||
    content.startsWith('-----BEGIN RSA PRIVATE KEY-----\n')
  ) {
    const trimmed = content.trimEnd();
    if (!trimmed.endsWith('\n-----END ENCRYPTED PRIVATE KEY-----') && !trimmed.endsWith('\n-----END RSA PRIVATE KEY-----')) {
      throw new FormatError('unexpected private key format (no matching END line)', { file });
    }
    const lines = trimmed
      .split('\n')
      .map((l) => l.trimEnd())
      .filter((l) => l !== '');
    if (lines.length < 20) throw new FormatError('unexpected private key format (too few lines)', { file });
    return { lines, isMasterKey: true };
  }
  let kc: KeyConfig;
  try {
    kc = parseKeyConfig(content, file);
  } catch (e) {
    throw new FormatError('neither a PEM private key nor a PBS key file', { file, cause: e });
  }
  // Upstream re-serialises the timestamps in the local time zone of the printing machine.
  const local: KeyConfig = {
    ...kc,
    created: formatRfc3339Local(parseRfc3339(kc.created)),
    modified: formatRfc3339Local(parseRfc3339(kc.modified)),
  };
  return { lines: serializeKeyConfigPretty(local).split('\n'), isMasterKey: false };
}

/** The upstream paper key layout (spec 5.2 to 5.4). */
export function generatePaperKey(content: string, opts: { file: string; subject?: string; format: PaperKeyFormat }): string {
  const src = paperKeySource(content, opts.file);
  return opts.format === 'html' ? paperKeyHtml(src, opts.subject) : paperKeyText(src, opts.subject);
}

function chunks<T>(a: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < a.length; i += n) out.push(a.slice(i, i + n));
  return out;
}

function paperKeyText(src: PaperKeySource, subject?: string): string {
  let out = subject !== undefined ? `Subject: ${subject}\n\n` : '';
  if (src.isMasterKey) {
    chunks(src.lines, 5).forEach((block, b) => {
      block.forEach((line, i) => (out += `${String(b * 5 + i).padStart(2)}: ${line}\n`));
      out += renderQrText(qrMatrix(block.join('\n'))) + '\n';
      out += '\f\n';
    });
    return out;
  }
  out += `${PAPERKEY_BEGIN}\n`;
  for (const l of src.lines) out += `${l}\n`;
  out += `${PAPERKEY_END}\n`;
  out += renderQrText(qrMatrix(src.lines.join('\n'))) + '\n';
  return out;
}

function paperKeyHtml(src: PaperKeySource, subject?: string): string {
  const img = (text: string): string =>
    `<center>\n<img\nwidth="500pt" height="500pt"\nsrc="${svgDataUri(text)}"/>\n</center>\n`;
  let out =
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n' +
    '<title>Proxmox Backup Paperkey</title>\n<style type="text/css">\n' +
    '  p {\n    font-size: 12pt;\n    font-family: monospace;\n    white-space: pre-wrap;\n    line-break: anywhere;\n  }\n' +
    '</style>\n</head>\n<body>\n';
  if (subject !== undefined) out += `<p>Subject: ${escapeHtml(subject)}</p>\n`;
  if (src.isMasterKey) {
    chunks(src.lines, 20).forEach((block, b) => {
      out += '<div style="page-break-inside: avoid;page-break-after: always">\n<p>\n';
      block.forEach((line, i) => (out += `${String(b * 20 + i).padStart(2, '0')}: ${escapeHtml(line)}\n`));
      out += '</p>\n' + img(block.join('\n')) + '</div>\n';
    });
    return out + '</body>\n</html>\n';
  }
  out += '<div style="page-break-inside: avoid">\n<p>\n';
  out += `${PAPERKEY_BEGIN}\n`;
  for (const l of src.lines) out += `${escapeHtml(l)}\n`;
  out += `${PAPERKEY_END}\n</p>\n`;
  out += img(src.lines.join('\n'));
  return out + '</div>\n</body>\n</html>\n';
}

export type ImportedPaperKey = { kind: 'key-config'; keyConfig: KeyConfig } | { kind: 'master-key'; pem: string };

/**
 * Rebuilds a key file from paper key text typed (or scanned) back in. Accepts:
 * - a bare KeyConfig JSON;
 * - text with the BEGIN/END PROXMOX BACKUP KEY lines around the JSON, with anything before
 *   or after (subject line, QR art, blank lines);
 * - a master key paper key: numbered "NN: " PEM lines (in any blocks, QR art in between).
 * HTML markup of the HTML form is stripped first.
 */
export function parsePaperKey(text: string, source: string): ImportedPaperKey {
  let t = text.replace(/\r\n?/g, '\n').replace(/^\uFEFF/, '');
  if (/<html|<p>/i.test(t)) t = t.replace(/<[^>]*>/g, '\n').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

  const trimmed = t.trim();
  if (trimmed.startsWith('{')) {
    try {
      return { kind: 'key-config', keyConfig: parseKeyConfig(trimmed, source) };
    } catch {
      // fall through to the marker search: maybe QR art or other text follows the JSON
    }
  }

  const begin = t.indexOf(PAPERKEY_BEGIN);
  if (begin >= 0) {
    const end = t.indexOf(PAPERKEY_END, begin + PAPERKEY_BEGIN.length);
    if (end < 0) throw new FormatError(`paper key has "${PAPERKEY_BEGIN}" but no "${PAPERKEY_END}" line`, { file: source });
    const json = t.slice(begin + PAPERKEY_BEGIN.length, end).trim();
    return { kind: 'key-config', keyConfig: parseKeyConfig(json, source) };
  }

  const numbered = new Map<number, string>();
  for (const raw of t.split('\n')) {
    const m = /^\s*(\d{1,3})\s*:\s*(.*?)\s*$/.exec(raw);
    if (!m) continue;
    const n = Number(m[1]);
    const prev = numbered.get(n);
    if (prev !== undefined && prev !== m[2]) {
      throw new FormatError(`paper key line ${n} appears twice with different text`, { file: source });
    }
    numbered.set(n, m[2]!);
  }
  if (numbered.size > 0) {
    const count = Math.max(...numbered.keys()) + 1;
    const lines: string[] = [];
    for (let i = 0; i < count; i++) {
      const l = numbered.get(i);
      if (l === undefined) throw new FormatError(`paper key line ${i} is missing`, { file: source });
      lines.push(l);
    }
    const first = lines[0] ?? '';
    const last = lines[lines.length - 1] ?? '';
    const m = /^-----BEGIN (ENCRYPTED PRIVATE KEY|RSA PRIVATE KEY)-----$/.exec(first);
    if (!m || last !== `-----END ${m[1]}-----`) {
      throw new FormatError('numbered paper key lines do not form a PEM private key (BEGIN/END lines wrong)', {
        file: source,
      });
    }
    for (let i = 1; i < lines.length - 1; i++) {
      if (!/^[A-Za-z0-9+/=]+$/.test(lines[i]!) && !/^[A-Za-z-]+: /.test(lines[i]!)) {
        throw new FormatError(`paper key line ${i} is not base64: ${JSON.stringify(lines[i]!.slice(0, 80))}`, {
          file: source,
        });
      }
    }
    // Upstream drops empty lines; a traditional encrypted PEM needs the one after its headers.
    const dek = lines.findIndex((l) => l.startsWith('DEK-Info:'));
    if (dek >= 0) lines.splice(dek + 1, 0, '');
    return { kind: 'master-key', pem: lines.join('\n') + '\n' };
  }
  throw new FormatError(`no key found: expected the "${PAPERKEY_BEGIN}" block or numbered master key lines`, {
    file: source,
  });
}
