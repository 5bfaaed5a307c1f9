/**
 * 8.3 names: 8 name and 3 extension bytes in an OEM code page, space padded. Bytes above 0x7F are
 * read as code page 437 (Linux's default `codepage=437`). Windows NT marks names that are all lower
 * case in byte 12 (0x08: the base, 0x10: the extension) instead of writing a long name.
 */

// Code page 437, bytes 0x80..0xFF.
const CP437_HIGH =
  'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0';

/** OEM (code page 437) bytes as UTF-8. */
export function oemBytesToUtf8(b: Buffer): Buffer {
  let s = '';
  for (const c of b) s += c < 0x80 ? String.fromCharCode(c) : CP437_HIGH[c - 0x80]!;
  return Buffer.from(s, 'utf8');
}

export const NT_LOWER_BASE = 0x08;
export const NT_LOWER_EXT = 0x10;

function part(raw: Buffer, lower: boolean): Buffer {
  let end = raw.length;
  while (end > 0 && raw[end - 1] === 0x20) end--;
  const out = Buffer.from(raw.subarray(0, end));
  if (lower) for (let i = 0; i < out.length; i++) if (out[i]! >= 0x41 && out[i]! <= 0x5a) out[i]! += 0x20;
  return out;
}

/** The 8.3 name of a directory entry (32 bytes) as UTF-8, with the NT lower-case flags applied. */
export function shortName(entry: Buffer): Buffer {
  const raw = Buffer.from(entry.subarray(0, 11));
  if (raw[0] === 0x05) raw[0] = 0xe5; // 0xE5 as a first byte is stored as 0x05 (0xE5 marks deletion)
  const flags = entry[12]!;
  const base = part(raw.subarray(0, 8), (flags & NT_LOWER_BASE) !== 0);
  const ext = part(raw.subarray(8, 11), (flags & NT_LOWER_EXT) !== 0);
  const name = ext.length > 0 ? Buffer.concat([base, Buffer.from('.'), ext]) : base;
  return oemBytesToUtf8(name);
}
