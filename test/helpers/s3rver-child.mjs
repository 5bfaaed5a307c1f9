// Runs s3rver on 127.0.0.1 (ephemeral port) for the tests, in its own process because its
// ListObjectsV2 pagination needs --openssl-legacy-provider on Node 20 (a DES continuation token).
// argv: <directory> <bucket>. Prints {"port":N} once listening; exits when stdin closes.
import S3rver from 's3rver';

const [directory, bucket] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
const { port } = await server.run();
process.stdout.write(JSON.stringify({ port }) + '\n');
const stop = () => server.close().finally(() => process.exit(0));
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
