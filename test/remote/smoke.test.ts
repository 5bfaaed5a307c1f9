import { afterAll, beforeAll, expect, it } from 'vitest';
import { PbsRepository } from '../../src/store/pbs-repository.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { PbsTestServer } from '../helpers/pbs-test-server.js';
import { makeTestCertificates } from '../helpers/test-certificates.js';
import { datastoreDir } from '../helpers/paths.js';

const certs = makeTestCertificates();
let server: PbsTestServer;
beforeAll(async () => {
  server = await new PbsTestServer({ root: datastoreDir, key: certs.selfSigned.key, cert: certs.selfSigned.cert, tokens: { 'root@pam!t': 's3cret' } }).start();
});
afterAll(() => server.stop());

it('the served datastore lists and opens like the local one (namespaces, snapshots, manifests)', async () => {
  const repo = await PbsRepository.open(server.repository('root@pam!t'), { fingerprint: certs.selfSigned.fingerprint, env: { PBS_PASSWORD: 's3cret' } });
  const local = await LocalDatastore.open(datastoreDir);
  try {
    const nss = await local.listNamespaces();
    expect(await repo.listNamespaces()).toEqual(nss);
    for (const ns of [[], ...nss]) {
      const strip = (l: { type: string; id: string; time: number; complete: boolean; files: string[] }[]) =>
        l.map((s) => ({ type: s.type, id: s.id, time: s.time, complete: s.complete, files: s.files }));
      const want = await local.listSnapshots(ns);
      expect(strip(await repo.listSnapshots(ns))).toEqual(strip(want));
      for (const s of want.filter((x) => x.complete)) {
        const a = await Snapshot.open(repo, ns, s);
        const b = await Snapshot.open(local, ns, s);
        expect(a.manifest.files).toEqual(b.manifest.files);
        await a.close();
      }
    }
  } finally {
    await repo.close();
  }
});

it('an unknown certificate is refused with its full fingerprint', async () => {
  const repo = await PbsRepository.open(server.repository('root@pam!t'), { env: { PBS_PASSWORD: 's3cret' } });
  await expect(repo.listGroups([])).rejects.toThrow(certs.selfSigned.fingerprint);
  await repo.close();
});

it('a wrong token secret is an authentication error naming the server', async () => {
  const repo = await PbsRepository.open(server.repository('root@pam!t'), { fingerprint: certs.selfSigned.fingerprint, env: { PBS_PASSWORD: 'wrong' } });
  await expect(repo.listGroups([])).rejects.toThrow(/127\.0\.0\.1:\d+: authentication failed/);
  await repo.close();
});
