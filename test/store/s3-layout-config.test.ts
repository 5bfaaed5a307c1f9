/**
 * The pure parts of the S3 backend: the key parser must never let a hostile key name a path
 * (`..`, empty components, over-deep namespaces) and must read PBS's layout exactly; the
 * repository string, endpoint, region and credentials resolve as the AWS tools resolve them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NotFoundError, UsageError } from '../../src/errors.js';
import { ContentTree, chunkKey } from '../../src/store/s3-layout.js';
import { S3Client } from '../../src/store/s3-client.js';
import { normaliseFingerprint, parseS3Repository, resolveS3Config } from '../../src/store/s3-config.js';
import { parseListObjectsV2, parseS3Error } from '../../src/store/s3-xml.js';

const CREDS = { AWS_ACCESS_KEY_ID: 'AK', AWS_SECRET_ACCESS_KEY: 'SK' };

describe('bucket keys of a PBS 4 S3 datastore', () => {
  it('puts chunks at <store>/.chunks/<4 hex>/<digest>', () => {
    const d = Buffer.from('bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8', 'hex');
    expect(chunkKey('store1', d)).toBe('store1/.chunks/bb9f/bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8');
  });

  it('reads namespaces, groups, snapshots and markers as PBS writes them', () => {
    const t = new ContentTree();
    for (const k of [
      'ns/a/.namespace',
      'ns/a/ns/b/.namespace',
      'ns/a/vm/100/owner',
      'ns/a/vm/100/2025-07-14T14:20:02Z/index.json.blob',
      'ns/a/vm/100/2025-07-14T14:20:02Z/drive-scsi0.img.fidx',
      'ns/a/vm/100/2025-07-14T14:20:02Z/.protected',
      'ns/a/vm/100/2025-07-14T14:20:02Z/client.log.blob.tmp_1234',
      'host/h/notes',
    ]) {
      t.add(k);
    }
    t.finish();
    expect([...t.namespaces.keys()].sort()).toEqual(['', 'a', 'a/b']);
    const snap = t.namespaces.get('a')!.groups.get('vm/100')!.snapshots.get(Date.parse('2025-07-14T14:20:02Z') / 1000)!;
    expect(snap).toEqual({ files: ['drive-scsi0.img.fidx', 'index.json.blob'], protected: true });
    expect(t.namespaces.get('')!.groups.has('host/h')).toBe(true);
    expect(t.skipped).toEqual([]);
  });

  it('never takes a dot-dot, empty or over-deep component for a name', () => {
    const t = new ContentTree();
    const hostile = [
      '../x',
      'ns/../vm/1/owner',
      'ns//vm/1/owner',
      'vm/../owner',
      'vm/1/2025-07-14T14:20:02Z/../../../etc',
      'vm/1/2025-07-14T14:20:02Z/',
      'vm/1//index.json.blob',
      'ns/.namespace',
      `${'ns/n/'.repeat(8)}vm/1/owner`,
      'vm/1/2025-02-30T00:00:00Z/index.json.blob',
      'vm',
      '',
    ];
    for (const k of hostile) t.add(k);
    t.finish();
    expect(t.skipped.map((s) => s.rel)).toEqual(hostile);
    for (const n of t.namespaces.values()) {
      for (const c of n.ns) expect(c).toMatch(/^[A-Za-z0-9_][A-Za-z0-9._-]*$/);
      for (const g of n.groups.values()) for (const s of g.snapshots.values()) for (const f of s.files) expect(f).not.toMatch(/\//);
    }
    expect([...t.namespaces.keys()].every((k) => k.split('/').length <= 7)).toBe(true);
  });
});

describe('S3 XML', () => {
  it('parses a ListObjectsV2 page with entities and a continuation token', () => {
    const p = parseListObjectsV2(
      '<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>a&amp;b</NextContinuationToken><Contents><Key>s/a&lt;b&#x41;</Key><ETag>&quot;e&quot;</ETag><Size>5</Size></Contents></ListBucketResult>',
      'test',
    );
    expect(p).toEqual({ objects: [{ key: 's/a<bA', etag: '"e"', size: 5 }], isTruncated: true, nextContinuationToken: 'a&b' });
  });

  it('refuses what is not a listing, and reads error bodies', () => {
    expect(() => parseListObjectsV2('<html>', 'x')).toThrow(/not a ListBucketResult/);
    expect(parseS3Error('<Error><Code>SlowDown</Code><Message>m</Message></Error>')).toEqual({ code: 'SlowDown', message: 'm', region: undefined });
  });
});

describe('s3:// repositories and their configuration', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'pbsfs-s3cfg-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('parses s3://BUCKET and s3://BUCKET/STORE, refusing bad names', () => {
    expect(parseS3Repository('s3://my-bucket/store1')).toEqual({ bucket: 'my-bucket', store: 'store1' });
    expect(parseS3Repository('s3://my-bucket')).toEqual({ bucket: 'my-bucket', store: undefined });
    expect(() => parseS3Repository('s3://My_Bucket/x')).toThrow(UsageError);
    expect(() => parseS3Repository('s3://bucket/../x')).toThrow(UsageError);
    expect(() => parseS3Repository('s3://bucket/a/b')).toThrow(UsageError);
  });

  it('defaults to AWS in us-west-1 with vhost addressing, and path style for a custom endpoint', () => {
    const aws = resolveS3Config('s3://bkt/st', {}, CREDS);
    expect(aws.region).toBe('us-west-1');
    expect(new S3Client(aws).url('st/.cnt/x').href).toBe('https://bkt.s3.us-west-1.amazonaws.com/st/.cnt/x');
    const custom = resolveS3Config('s3://bkt/st', { endpoint: 'https://minio.local:9000' }, { ...CREDS, AWS_REGION: 'eu-1' });
    expect(custom.region).toBe('eu-1');
    expect(new S3Client(custom).url('st/a b').href).toBe('https://minio.local:9000/bkt/st/a%20b');
    const vhost = resolveS3Config('s3://bkt/st', { endpoint: 'https://minio.local:9000', vhostStyle: true, region: 'r2' }, CREDS);
    expect(vhost.region).toBe('r2');
    expect(new S3Client(vhost).url('st/x').href).toBe('https://bkt.minio.local:9000/st/x');
    expect(resolveS3Config('s3://bkt/st', {}, { ...CREDS, PBS_S3_ENDPOINT: 'objects.example' }).endpoint.href).toBe('https://objects.example/');
  });

  it('accepts http:// only when written so, and warns once', () => {
    const warned: string[] = [];
    new S3Client(resolveS3Config('s3://bkt/st', { endpoint: 'http://127.0.0.1:1' }, CREDS), { warn: (l) => warned.push(l) });
    expect(warned).toEqual(['the S3 endpoint http://127.0.0.1:1 is plain http://: requests and data travel unencrypted']);
    expect(() => resolveS3Config('s3://bkt/st', { endpoint: 'ftp://x' }, CREDS)).toThrow(UsageError);
    expect(() => resolveS3Config('s3://bkt/st', { endpoint: 'https://user:pw@x' }, CREDS)).toThrow(/must not carry credentials/);
  });

  it('reads credentials from the environment, else the shared file and AWS_PROFILE', () => {
    expect(resolveS3Config('s3://bkt/st', {}, { ...CREDS, AWS_SESSION_TOKEN: 'T' }).credentials).toEqual({ accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'T' });
    const file = join(scratch, 'credentials');
    writeFileSync(file, '[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[backup]\naws_access_key_id=B\naws_secret_access_key=BS\n');
    expect(resolveS3Config('s3://bkt/st', {}, { AWS_SHARED_CREDENTIALS_FILE: file }).credentials).toEqual({ accessKeyId: 'D', secretAccessKey: 'DS' });
    expect(resolveS3Config('s3://bkt/st', {}, { AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'backup' }).credentials).toEqual({ accessKeyId: 'B', secretAccessKey: 'BS' });
    expect(() => resolveS3Config('s3://bkt/st', {}, { AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'none' })).toThrow(/profile "none" has no/);
    expect(() => resolveS3Config('s3://bkt/st', {}, { AWS_SHARED_CREDENTIALS_FILE: join(scratch, 'missing') })).toThrow(NotFoundError);
    expect(() => resolveS3Config('s3://bkt/st', {}, { AWS_ACCESS_KEY_ID: 'only' })).toThrow(/set both/);
  });

  it('takes a pinned fingerprint in either form', () => {
    const hex = 'ab'.repeat(32);
    expect(normaliseFingerprint(hex)).toBe(hex.match(/../g)!.join(':'));
    expect(() => normaliseFingerprint('abc')).toThrow(UsageError);
  });
});
