/**
 * Certificates made at test time with openssl: a CA, a server certificate it signed (for
 * 127.0.0.1 and localhost), and an unrelated self-signed one. Nothing is kept after the tests.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCert {
  key: string;
  cert: string;
  /** SHA-256 of the DER certificate, lowercase `aa:bb:…`. */
  fingerprint: string;
}

export interface TestCertificates {
  /** PEM of the CA that signed `signed`. */
  ca: string;
  /** A certificate the CA signed, valid for 127.0.0.1 and localhost. */
  signed: TestCert;
  /** A self-signed certificate for 127.0.0.1 (what a fresh PBS has). */
  selfSigned: TestCert;
  /** Another self-signed certificate (an impostor's). */
  other: TestCert;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function selfSigned(dir: string, name: string): TestCert {
  writeFileSync(join(dir, `${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], dir);
  return load(dir, name);
}

function load(dir: string, name: string): TestCert {
  const cert = readFileSync(join(dir, `${name}.crt`), 'utf8');
  return { key: readFileSync(join(dir, `${name}.key`), 'utf8'), cert, fingerprint: new X509Certificate(cert).fingerprint256.toLowerCase() };
}

export function makeTestCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'pbsfs-certs-'));
  try {
    openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=pbsfs test CA'], dir);
    openssl(['req', ...EC, '-keyout', 'signed.key', '-out', 'signed.csr', '-subj', '/CN=localhost'], dir);
    writeFileSync(join(dir, 'signed.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    openssl(['x509', '-req', '-in', 'signed.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'signed.crt', '-days', '2', '-extfile', 'signed.ext'], dir);
    return {
      ca: readFileSync(join(dir, 'ca.crt'), 'utf8'),
      signed: load(dir, 'signed'),
      selfSigned: selfSigned(dir, 'self'),
      other: selfSigned(dir, 'other'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
