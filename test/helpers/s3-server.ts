/**
 * s3rver for the tests: started in a child process on 127.0.0.1 (ephemeral port), behind a
 * recording proxy that logs every request's method and URL (the read-only proof counts them),
 * and stopped in teardown. `uploadDatastore` puts a datastore directory into the bucket in the
 * layout of a PBS 4 S3 datastore.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { readFile, readdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AwsClient } from 'aws4fetch';
import { dir } from 'tmp-promise';
import { encodeBlob } from '../../src/blob/data-blob.js';

/** s3rver accepts these credentials (and, unlike S3, any secret for this key id). */
export const S3RVER_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
export const TEST_REGION = 'us-west-1';

export interface RecordedRequest {
  method: string;
  url: string;
}

export interface S3TestServer {
  /** The proxy's endpoint (what pbsfs is pointed at), `http://127.0.0.1:PORT`. */
  endpoint: string;
  /** s3rver's own endpoint (for set-up writes that must not show in `requests`). */
  directEndpoint: string;
  bucket: string;
  /** Requests that went through the proxy, in order. */
  requests: RecordedRequest[];
  /** Environment for a pbsfs child process reading this server. */
  env(store?: string): Record<string, string>;
  stop(): Promise<void>;
}

const childScript = join(fileURLToPath(new URL('.', import.meta.url)), 's3rver-child.mjs');

export async function startS3rver(bucket = 'pbs-test'): Promise<S3TestServer> {
  const tmp = await dir({ unsafeCleanup: true, prefix: 'pbsfs-s3rver-' });
  const child = spawn(process.execPath, ['--openssl-legacy-provider', childScript, tmp.path, bucket], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /\{"port":(\d+)\}/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.on('exit', (code) => reject(new Error(`s3rver exited with ${code} before listening`)));
      child.on('error', reject);
    });
  } catch (e) {
    child.kill('SIGKILL');
    await tmp.cleanup();
    throw e;
  }
  const requests: RecordedRequest[] = [];
  const proxy = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '' });
    const up = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const proxyPort = (proxy.address() as AddressInfo).port;
  const endpoint = `http://127.0.0.1:${proxyPort}`;
  return {
    endpoint,
    directEndpoint: `http://127.0.0.1:${port}`,
    bucket,
    requests,
    env: (store?: string) => ({
      ...S3RVER_CREDENTIALS,
      PBS_S3_ENDPOINT: endpoint,
      AWS_REGION: TEST_REGION,
      ...(store !== undefined ? { PBS_REPOSITORY: `s3://${bucket}/${store}` } : {}),
    }),
    stop: () => stopAll(proxy, child, tmp.cleanup),
  };
}

async function stopAll(proxy: Server, child: ChildProcess, cleanup: () => Promise<void>): Promise<void> {
  proxy.closeAllConnections();
  await new Promise<void>((r) => proxy.close(() => r()));
  if (child.exitCode === null) {
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
  await cleanup();
}

/** A signing client for set-up writes (PUT) straight to s3rver. */
export function setupClient(): AwsClient {
  return new AwsClient({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', service: 's3', region: TEST_REGION });
}

export async function putObject(server: S3TestServer, key: string, body: Uint8Array | string): Promise<void> {
  const url = `${server.directEndpoint}/${server.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  const res = await setupClient().fetch(url, { method: 'PUT', body });
  if (!res.ok) throw new Error(`PUT ${key}: HTTP ${res.status} ${await res.text()}`);
}

/** 4 MiB of zeros: PBS puts this chunk (compressed) in every S3 store when creating it. */
export const ZERO_CHUNK_PLAINTEXT_BYTES = 4 * 1024 * 1024;

/** Every object key (relative to the store) with its content, for a datastore directory in PBS's S3 layout. */
export async function s3LayoutOf(root: string, hostname = 'pbs-test-host'): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (rel: string): Promise<void> => {
    for (const d of await readdir(join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) {
        if (/^(?:ns\/[^/]+\/)*ns\/[^/]+$/.test(r)) out.set(`.cnt/${r}/.namespace`, Buffer.alloc(0));
        await walk(r);
      } else if (d.isFile()) {
        if (r.startsWith('.chunks/')) out.set(r, await readFile(join(root, r)));
        else if (!r.startsWith('.')) out.set(`.cnt/${r}`, await readFile(join(root, r)));
        // .lock, .gc-status and other host files stay on the PBS host.
      }
    }
  };
  await walk('');
  const zeros = Buffer.alloc(ZERO_CHUNK_PLAINTEXT_BYTES);
  const digest = createHash('sha256').update(zeros).digest('hex');
  const zeroKey = `.chunks/${digest.slice(0, 4)}/${digest}`;
  if (!out.has(zeroKey)) out.set(zeroKey, encodeBlob(zeros, { compress: true }));
  out.set('.in-use', Buffer.from(JSON.stringify({ hostname })));
  return out;
}

/** Uploads a datastore directory as `<store>/…` in PBS 4's S3 layout; returns the keys written. */
export async function uploadDatastore(server: S3TestServer, root: string, store: string): Promise<string[]> {
  const objects = await s3LayoutOf(root);
  const keys = [...objects.keys()].map((k) => `${store}/${k}`);
  const entries = [...objects.entries()];
  // A few at a time: s3rver writes each object to disk with its metadata.
  for (let i = 0; i < entries.length; i += 8) {
    await Promise.all(entries.slice(i, i + 8).map(([k, v]) => putObject(server, `${store}/${k}`, v)));
  }
  return keys;
}

/** Every object of the bucket with its ETag and size, listed straight from s3rver. */
export async function bucketInventory(server: S3TestServer): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let token: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ 'list-type': '2', ...(token ? { 'continuation-token': token } : {}) });
    const res = await setupClient().fetch(`${server.directEndpoint}/${server.bucket}?${q}`);
    const xml = await res.text();
    if (!res.ok) throw new Error(`list: HTTP ${res.status} ${xml}`);
    for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
      const key = /<Key>(.*?)<\/Key>/.exec(m[1]!)![1]!;
      out.set(key, `${/<ETag>(.*?)<\/ETag>/.exec(m[1]!)?.[1]} ${/<Size>(.*?)<\/Size>/.exec(m[1]!)?.[1]}`);
    }
    if (!/<IsTruncated>true<\/IsTruncated>/.test(xml)) return out;
    token = /<NextContinuationToken>(.*?)<\/NextContinuationToken>/.exec(xml)![1]!;
  }
}
