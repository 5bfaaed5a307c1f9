/**
 * LVM2's metadata text format (what `vgcfgbackup` writes): `key = value` pairs and named
 * `{ ... }` sections, values being numbers, quoted strings or flat lists of them, `#` comments.
 * Bounded: the text is at most MAX_METADATA_BYTES (checked by the caller) and sections nest at
 * most MAX_DEPTH deep.
 */
import { FormatError, LimitError } from '../../errors.js';

export const MAX_DEPTH = 32;

export type LvmValue = number | string | (number | string)[] | LvmSection;
export interface LvmSection {
  [key: string]: LvmValue;
}

export function isSection(v: LvmValue | undefined): v is LvmSection {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses LVM metadata text; `where` names it in errors (the offset is into the text). */
export function parseLvmText(text: string, where: string): LvmSection {
  let pos = 0;
  const fail = (problem: string): never => {
    throw new FormatError(`LVM metadata: ${problem}`, { file: where, offset: pos });
  };
  const skip = (): void => {
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c === 0x23) {
        const nl = text.indexOf('\n', pos);
        pos = nl < 0 ? text.length : nl + 1;
      } else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) pos++;
      else break;
    }
  };
  const ident = (): string => {
    const m = /[A-Za-z0-9_.+\-]+/y;
    m.lastIndex = pos;
    const r = m.exec(text);
    if (r === null) return fail(`expected a name, found ${JSON.stringify(text.slice(pos, pos + 10))}`);
    pos += r[0].length;
    return r[0];
  };
  const str = (): string => {
    pos++; // opening quote
    let out = '';
    for (;;) {
      if (pos >= text.length) return fail('unterminated string');
      const c = text[pos++]!;
      if (c === '"') return out;
      if (c === '\\') {
        if (pos >= text.length) return fail('unterminated string');
        out += text[pos++];
      } else out += c;
    }
  };
  const scalar = (): number | string => {
    if (text[pos] === '"') return str();
    const m = /-?[0-9]+(\.[0-9]+)?/y;
    m.lastIndex = pos;
    const r = m.exec(text);
    if (r === null) return fail(`expected a value, found ${JSON.stringify(text.slice(pos, pos + 10))}`);
    pos += r[0].length;
    const n = Number(r[0]);
    if (!Number.isSafeInteger(n) && r[1] === undefined) return fail(`number ${r[0]} is too large`);
    return n;
  };
  const section = (depth: number, closing: boolean): LvmSection => {
    if (depth > MAX_DEPTH) throw new LimitError(`LVM metadata nests deeper than ${MAX_DEPTH} sections`, { file: where, offset: pos });
    const out: LvmSection = Object.create(null) as LvmSection;
    for (;;) {
      skip();
      if (pos >= text.length) {
        if (closing) fail('missing "}"');
        return out;
      }
      if (text[pos] === '}') {
        if (!closing) fail('unexpected "}"');
        pos++;
        return out;
      }
      const key = ident();
      skip();
      if (text[pos] === '{') {
        pos++;
        out[key] = section(depth + 1, true);
      } else if (text[pos] === '=') {
        pos++;
        skip();
        if (text[pos] === '[') {
          pos++;
          const list: (number | string)[] = [];
          for (;;) {
            skip();
            if (text[pos] === ']') {
              pos++;
              break;
            }
            list.push(scalar());
            skip();
            if (text[pos] === ',') pos++;
            else if (text[pos] !== ']') fail('expected "," or "]" in a list');
          }
          out[key] = list;
        } else out[key] = scalar();
      } else fail(`expected "=" or "{" after ${key}`);
    }
  };
  return section(0, false);
}
