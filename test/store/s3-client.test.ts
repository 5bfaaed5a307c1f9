/**
 * The read-only S3 client against a SigV4-checking fake endpoint: what it must produce (objects,
 * ranges, every page of a listing) and each misbehaviour it must turn into one clear typed error
 * (wrong secret, missing bucket, wrong region, throttling, cut bodies, stalls, oversized bodies).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CryptoError, IoError, LimitError, NotFoundError, UsageError } from '../../src/errors.js';
import { S3Client, type S3ClientOptions } from '../../src/store/s3-client.js';
import { resolveS3Config } from '../../src/store/s3-config.js';
import { startFakeS3, type FakeS3 } from '../helpers/fake-s3.js';

const BUCKET = 'fake-bucket';
let fake: FakeS3;
const objects = new Map<string, Buffer>();
for (let i = 0; i < 7; i++) objects.set(`st/.cnt/vm/10${i}/owner`, Buffer.from(`owner ${i}`));
objects.set('st/blob with space+plus', Buffer.from('0123456789abcdef'));
objects.set('st/big', Buffer.alloc(200_000, 7));

function client(env: Record<string, string> = {}, opts: S3ClientOptions = {}): S3Client {
  const config = resolveS3Config(`s3://${BUCKET}/st`, { endpoint: fake.endpoint }, {
    AWS_ACCESS_KEY_ID: 'TESTKEY',
    AWS_SECRET_ACCESS_KEY: 'TESTSECRET',
    AWS_REGION: 'us-west-1',
    ...env,
  });
  return new S3Client(config, { retryBaseMs: 1, idleTimeoutMs: 300, warn: () => {}, ...opts });
}

beforeAll(async () => {
  fake = await startFakeS3({ bucket: BUCKET, objects });
});
afterAll(async () => {
  await fake.stop();
});

describe('S3Client reads what the endpoint holds', () => {
  it('gets an object whose key needs encoding, signed with the real payload hash', async () => {
    fake.fault = undefined;
    expect((await client().get('st/blob with space+plus', { maxBytes: 100 })).toString()).toBe('0123456789abcdef');
  });

  it('gets a byte range', async () => {
    expect((await client().get('st/blob with space+plus', { maxBytes: 100, range: [4, 9] })).toString()).toBe('45678');
  });

  it('lists every key of a prefix across pages, in order', async () => {
    const keys: string[] = [];
    for await (const o of client().list('st/.cnt/', { maxKeys: 2 })) keys.push(o.key);
    expect(keys).toEqual([...objects.keys()].filter((k) => k.startsWith('st/.cnt/')).sort());
  });

  it('heads an object, and says undefined for a missing one', async () => {
    expect((await client().head('st/big'))?.size).toBe(200_000);
    expect(await client().head('st/nope')).toBeUndefined();
  });

  it('sends nothing but GET and HEAD', () => {
    expect(new Set(fake.requests.map((r) => r.method))).toEqual(new Set(['GET', 'HEAD']));
  });
});

describe('S3Client turns a misbehaving endpoint into one clear error', () => {
  it('a wrong secret is a credentials error', async () => {
    fake.fault = undefined;
    const e = await client({ AWS_SECRET_ACCESS_KEY: 'wrong' }).get('st/big', { maxBytes: 1e6 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CryptoError);
    expect((e as Error).message).toMatch(/rejected the credentials \(SignatureDoesNotMatch\)/);
    expect((e as Error).message).not.toContain('wrong');
  });

  it('an unknown access key is a credentials error', async () => {
    const e = await client({ AWS_ACCESS_KEY_ID: 'NOBODY' }).get('st/big', { maxBytes: 1e6 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CryptoError);
    expect((e as Error).message).toMatch(/InvalidAccessKeyId/);
  });

  it('a missing bucket is not-found, naming the bucket', async () => {
    const config = resolveS3Config('s3://other-bucket/st', { endpoint: fake.endpoint }, { AWS_ACCESS_KEY_ID: 'TESTKEY', AWS_SECRET_ACCESS_KEY: 'TESTSECRET' });
    const e = await new S3Client(config, { retryBaseMs: 1, warn: () => {} }).get('st/big', { maxBytes: 10 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NotFoundError);
    expect((e as Error).message).toMatch(/bucket other-bucket does not exist/);
  });

  it('a wrong region says which region to use', async () => {
    const e = await client({ AWS_REGION: 'eu-central-1' }).get('st/big', { maxBytes: 1e6 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).toMatch(/use --s3-region us-west-1/);
  });

  it('retries 503 SlowDown with backoff and succeeds when the endpoint recovers', async () => {
    fake.fault = (r) => (r.key === 'st/big' && r.attempt < 2 ? { status: 503, code: 'SlowDown' } : undefined);
    expect((await client().get('st/big', { maxBytes: 1e6 })).length).toBe(200_000);
  });

  it('throttling that does not end is a clear error after three tries', async () => {
    const before = fake.requests.length;
    fake.fault = (r) => (r.key === 'st/big' ? { status: 503, code: 'SlowDown' } : undefined);
    const e = await client().get('st/big', { maxBytes: 1e6 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IoError);
    expect((e as Error).message).toMatch(/throttling requests \(503 SlowDown\) after 3 tries/);
    expect(fake.requests.length - before).toBe(3);
  });

  it('a body cut short is retried, and refused when it stays short', async () => {
    fake.fault = (r) => (r.key === 'st/big' && r.attempt === 0 ? { truncateAt: 1000 } : undefined);
    expect((await client().get('st/big', { maxBytes: 1e6 })).equals(objects.get('st/big')!)).toBe(true);
    fake.fault = (r) => (r.key === 'st/big' ? { truncateAt: 1000 } : undefined);
    const e = await client().get('st/big', { maxBytes: 1e6 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IoError);
    expect((e as Error).message).toMatch(/s3:\/\/fake-bucket\/st\/big/);
  });

  it('a server that stalls mid-body is cut off by the idle timeout', async () => {
    fake.fault = (r) => (r.key === 'st/big' ? { stallAfter: 100 } : undefined);
    const t0 = Date.now();
    const e = await client({}, { idleTimeoutMs: 200 }).get('st/big', { maxBytes: 1e6 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IoError);
    expect((e as Error).message).toMatch(/sent nothing for 200 ms \(stalled\)/);
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('a body larger than the cap is refused before it is read', async () => {
    fake.fault = undefined;
    const e = await client().get('st/big', { maxBytes: 1000 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(LimitError);
    expect((e as Error).message).toMatch(/200000 bytes, more than the 1000-byte limit/);
  });

  it('a listing that claims more pages without a token is an error, not a loop', async () => {
    const b = await startFakeS3({ bucket: BUCKET, objects });
    try {
      // Answer every listing with a truncated page that has no continuation token.
      const cfg = resolveS3Config(`s3://${BUCKET}/st`, { endpoint: b.endpoint }, { AWS_ACCESS_KEY_ID: 'TESTKEY', AWS_SECRET_ACCESS_KEY: 'TESTSECRET' });
      const bc = new S3Client(cfg, {
        retryBaseMs: 1,
        warn: () => {},
        fetch: async (input, init) => {
          const res = await fetch(input, init);
          const xml = (await res.text()).replace(/<IsTruncated>false<\/IsTruncated>/, '<IsTruncated>true</IsTruncated>');
          return new Response(xml, { status: res.status, headers: { 'content-type': 'application/xml' } });
        },
      });
      const e = await (async () => {
        for await (const _ of bc.list('st/')) void _;
      })().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(IoError);
      expect((e as Error).message).toMatch(/truncated but gives no continuation token/);
    } finally {
      await b.stop();
    }
  });
});
