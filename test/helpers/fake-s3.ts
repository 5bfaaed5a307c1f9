/**
 * A small S3 endpoint for what s3rver cannot do: it checks SigV4 for real (a wrong secret is
 * 403 SignatureDoesNotMatch, another region's scope is 400 AuthorizationHeaderMalformed), and a
 * per-request fault hook answers with a status, cuts a body short, stalls, or swaps a body.
 * GET (ranged too), HEAD and ListObjectsV2 over an in-memory Map; it refuses every write.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { AwsV4Signer } from 'aws4fetch';

export type Fault =
  | { status: number; code?: string; message?: string; region?: string; headers?: Record<string, string> }
  | { truncateAt: number }
  | { stallAfter: number }
  | { body: Buffer };

export interface FaultRequest {
  method: string;
  key: string;
  query: URLSearchParams;
  /** How many times this method+key was asked before (0 on the first try). */
  attempt: number;
}

export interface FakeS3Options {
  bucket: string;
  region?: string;
  objects?: Map<string, Buffer>;
  /** Access key id -> secret. */
  credentials?: Record<string, string>;
  fault?: (r: FaultRequest) => Fault | undefined;
}

export interface FakeS3 {
  endpoint: string;
  objects: Map<string, Buffer>;
  requests: { method: string; url: string }[];
  fault: ((r: FaultRequest) => Fault | undefined) | undefined;
  stop(): Promise<void>;
}

const xmlEscape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function sendError(res: ServerResponse, status: number, code: string, message = code, extra = ''): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message>${extra}</Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startFakeS3(opts: FakeS3Options): Promise<FakeS3> {
  const region = opts.region ?? 'us-west-1';
  const credentials = opts.credentials ?? { TESTKEY: 'TESTSECRET' };
  const objects = opts.objects ?? new Map<string, Buffer>();
  const requests: { method: string; url: string }[] = [];
  const attempts = new Map<string, number>();
  const state: FakeS3 = { endpoint: '', objects, requests, fault: opts.fault, stop: async () => {} };

  const authorised = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> => {
    const auth = req.headers.authorization ?? '';
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) {
      sendError(res, 403, 'AccessDenied', 'anonymous access is not allowed');
      return false;
    }
    const [, id, , scopeRegion, signedHeaders] = m;
    const secret = credentials[id!];
    if (secret === undefined) {
      sendError(res, 403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
      return false;
    }
    if (scopeRegion !== region) {
      sendError(res, 400, 'AuthorizationHeaderMalformed', `the region '${scopeRegion}' is wrong; expecting '${region}'`, `<Region>${region}</Region>`);
      return false;
    }
    const headers: Record<string, string> = {};
    for (const h of signedHeaders!.split(';')) if (h !== 'host') headers[h] = String(req.headers[h] ?? '');
    const signer = new AwsV4Signer({
      method: req.method ?? 'GET',
      url: url.href,
      headers,
      accessKeyId: id!,
      secretAccessKey: secret,
      service: 's3',
      region,
      datetime: String(req.headers['x-amz-date'] ?? ''),
    });
    if ((await signer.authHeader()) !== auth.replace(/, ?/g, ', ')) {
      sendError(res, 403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
      return false;
    }
    const payload = req.headers['x-amz-content-sha256'];
    if (payload !== createHash('sha256').update('').digest('hex')) {
      sendError(res, 400, 'XAmzContentSHA256Mismatch', 'the payload hash is not the hash of the empty body');
      return false;
    }
    return true;
  };

  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    requests.push({ method: req.method ?? '', url: req.url ?? '' });
    const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
    if (!(await authorised(req, res, url))) return;
    const path = url.pathname.split('/').map(decodeURIComponent);
    const bucket = path[1];
    const key = path.slice(2).join('/');
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, 'MethodNotAllowed', 'this endpoint is read-only');
    if (bucket !== opts.bucket) return sendError(res, 404, 'NoSuchBucket', 'The specified bucket does not exist');
    const id = `${req.method} ${key}?${url.searchParams}`;
    const attempt = attempts.get(id) ?? 0;
    attempts.set(id, attempt + 1);
    const fault = state.fault?.({ method: req.method, key, query: url.searchParams, attempt });
    if (fault && 'status' in fault) {
      if (req.method === 'HEAD') {
        res.writeHead(fault.status, fault.headers);
        return void res.end();
      }
      return sendError(res, fault.status, fault.code ?? 'InternalError', fault.message, fault.region ? `<Region>${fault.region}</Region>` : '');
    }
    if (key === '') {
      if (url.searchParams.get('list-type') !== '2') return sendError(res, 400, 'InvalidRequest', 'only ListObjectsV2');
      return sendBody(res, Buffer.from(listXml(objects, url.searchParams, opts.bucket)), fault, 'application/xml');
    }
    let body = objects.get(key);
    if (body === undefined) return sendError(res, 404, 'NoSuchKey', 'The specified key does not exist.');
    if (fault && 'body' in fault) body = fault.body;
    const etag = `"${createHash('md5').update(body).digest('hex')}"`;
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-length': body.length, etag });
      return void res.end();
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(Number(range[2]), body.length - 1);
      if (start >= body.length) return sendError(res, 416, 'InvalidRange', 'The requested range is not satisfiable');
      res.setHeader('content-range', `bytes ${start}-${end}/${body.length}`);
      return sendBody(res, body.subarray(start, end + 1), fault, 'application/octet-stream', 206, etag);
    }
    sendBody(res, body, fault, 'application/octet-stream', 200, etag);
  };

  const server = createServer((req, res) => {
    serve(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.stop = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return state;
}

function sendBody(res: ServerResponse, body: Buffer, fault: Fault | undefined, type: string, status = 200, etag?: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': body.length, ...(etag ? { etag } : {}) });
  if (fault && 'truncateAt' in fault) {
    res.write(body.subarray(0, fault.truncateAt), () => res.destroy());
    return;
  }
  if (fault && 'stallAfter' in fault) {
    res.write(body.subarray(0, fault.stallAfter)); // and then nothing, until the client gives up
    return;
  }
  res.end(body);
}

function listXml(objects: Map<string, Buffer>, q: URLSearchParams, bucket: string): string {
  const prefix = q.get('prefix') ?? '';
  const max = Math.min(1000, Number(q.get('max-keys') ?? '1000'));
  const token = q.get('continuation-token');
  const after = token !== null ? Buffer.from(token, 'base64url').toString() : (q.get('start-after') ?? '');
  const keys = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > after).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const page = keys.slice(0, max);
  const truncated = keys.length > page.length;
  const contents = page
    .map((k) => {
      const b = objects.get(k)!;
      return `<Contents><Key>${xmlEscape(k)}</Key><ETag>&quot;${createHash('md5').update(b).digest('hex')}&quot;</ETag><Size>${b.length}</Size></Contents>`;
    })
    .join('');
  const next = truncated ? `<NextContinuationToken>${Buffer.from(page[page.length - 1]!).toString('base64url')}</NextContinuationToken>` : '';
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>${bucket}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${page.length}</KeyCount><IsTruncated>${truncated}</IsTruncated>${next}${contents}</ListBucketResult>`;
}
