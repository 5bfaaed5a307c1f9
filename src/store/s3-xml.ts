/**
 * The few S3 XML documents a read-only client meets: ListObjectsV2 results and error bodies.
 * S3 XML is flat and machine-written, so a tag scanner is enough; every value is entity-decoded
 * and nothing in it is trusted (a key is checked by the layout parser before it is used).
 */
import { FormatError } from '../errors.js';

export interface ListedObject {
  key: string;
  size: number;
  etag: string;
}

export interface ListPage {
  objects: ListedObject[];
  isTruncated: boolean;
  nextContinuationToken: string | undefined;
}

export interface S3ErrorBody {
  code: string | undefined;
  message: string | undefined;
  region: string | undefined;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Decodes the five XML entities and numeric character references. */
export function decodeXmlText(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (m, e: string) => {
    if (e.startsWith('#x')) return codePoint(parseInt(e.slice(2), 16), m);
    if (e.startsWith('#')) return codePoint(parseInt(e.slice(1), 10), m);
    return ENTITIES[e] ?? m;
  });
}

function codePoint(n: number, fallback: string): string {
  return Number.isInteger(n) && n >= 0 && n <= 0x10ffff ? String.fromCodePoint(n) : fallback;
}

/** The text of the first `<tag>…</tag>` in `xml`, decoded; undefined when absent. */
function firstTag(xml: string, tag: string): string | undefined {
  const open = xml.indexOf(`<${tag}>`);
  if (open < 0) return undefined;
  const start = open + tag.length + 2;
  const end = xml.indexOf(`</${tag}>`, start);
  if (end < 0) return undefined;
  return decodeXmlText(xml.slice(start, end));
}

/** Parses a ListObjectsV2 response body; `what` names the listing in errors. */
export function parseListObjectsV2(xml: string, what: string): ListPage {
  if (!xml.includes('<ListBucketResult')) throw new FormatError('the S3 listing is not a ListBucketResult document', { file: what });
  const objects: ListedObject[] = [];
  let from = 0;
  for (;;) {
    const open = xml.indexOf('<Contents>', from);
    if (open < 0) break;
    const close = xml.indexOf('</Contents>', open);
    if (close < 0) throw new FormatError('the S3 listing ends inside a <Contents> element', { file: what });
    const body = xml.slice(open + 10, close);
    from = close + 11;
    const key = firstTag(body, 'Key');
    if (key === undefined) throw new FormatError('an S3 listing entry has no <Key>', { file: what });
    const size = Number(firstTag(body, 'Size') ?? '0');
    objects.push({ key, size: Number.isSafeInteger(size) && size >= 0 ? size : 0, etag: firstTag(body, 'ETag') ?? '' });
  }
  // Entries are scanned by <Contents>; CommonPrefixes (delimiter listings) are never asked for.
  // The page fields sit beside the entries, never inside them.
  const rest = xml.replace(/<Contents>[\s\S]*?<\/Contents>/g, '');
  return {
    objects,
    isTruncated: firstTag(rest, 'IsTruncated') === 'true',
    nextContinuationToken: firstTag(rest, 'NextContinuationToken'),
  };
}

/** The Code, Message and Region of an S3 `<Error>` body (all undefined for other bodies). */
export function parseS3Error(xml: string): S3ErrorBody {
  if (!xml.includes('<Error>')) return { code: undefined, message: undefined, region: undefined };
  return { code: firstTag(xml, 'Code'), message: firstTag(xml, 'Message'), region: firstTag(xml, 'Region') };
}
