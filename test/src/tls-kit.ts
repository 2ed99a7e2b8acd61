/**
 * What the TLS tests and the network attacks share: self-signed certificates made on the spot
 * (openssl when the machine has it, else a few lines of DER and node:crypto), an honest CONNECT
 * proxy and a TLS-inspecting one on loopback (each records what it saw), and an idle trainer for
 * site nodes that only need to connect.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { certificatePin } from '@twinfed/shared/crypto/index';
import type { LocalTrainer } from '@twinfed/site-node';

export interface TestCert {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  pin: string;
}

let opensslHere: boolean | null = null;
function hasOpenssl(): boolean {
  if (opensslHere === null) {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      opensslHere = true;
    } catch {
      opensslHere = false;
    }
  }
  return opensslHere;
}

/**
 * A fresh self-signed ECDSA P-256 certificate for `cn` (valid two days, SAN 127.0.0.1 with
 * openssl), written as `name.crt` / `name.key` in `dir`.
 */
export function makeCert(dir: string, name: string, cn = 'twinfed-test', how: 'auto' | 'node' = 'auto'): TestCert {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  if (how === 'auto' && hasOpenssl()) {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '2',
        '-subj',
        `/CN=${cn}`,
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        keyFile,
        '-out',
        certFile,
      ],
      { stdio: 'ignore' },
    );
  } else {
    const { certPem, keyPem } = selfSignedWithNode(cn);
    writeFileSync(certFile, certPem);
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
  }
  const certPem = readFileSync(certFile, 'utf8');
  return { certFile, keyFile, certPem, keyPem: readFileSync(keyFile, 'utf8'), pin: certificatePin(certPem) };
}

// ---- a minimal X.509 v3 certificate (RFC 5280 §4.1) in DER, for machines without openssl
function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const seq = (...xs: Buffer[]) => tlv(0x30, Buffer.concat(xs));
const uint = (b: Buffer) => tlv(0x02, b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const v of rest) {
    const groups = [v & 0x7f];
    for (let x = v >> 7; x > 0; x >>= 7) groups.unshift((x & 0x7f) | 0x80);
    out.push(...groups);
  }
  return tlv(0x06, Buffer.from(out));
}
const utcTime = (d: Date) => tlv(0x17, Buffer.from(`${d.toISOString().slice(2, 19).replace(/[-T:]/g, '')}Z`));

/** A self-signed ECDSA P-256 / SHA-256 certificate made with node:crypto only. */
export function selfSignedWithNode(cn: string): { certPem: string; keyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecdsaSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(tlv(0x31, seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn)))));
  const now = Date.now();
  // A DER INTEGER is minimally encoded: a random serial starting with 0x00 (then a byte below 0x80)
  // is "illegal padding" to OpenSSL (1 certificate in 512 failed to load). Positive, first byte non-zero.
  const serial = randomBytes(8);
  serial[0] = (serial[0] & 0x7f) | 0x01;
  const tbs = seq(
    tlv(0xa0, uint(Buffer.from([2]))), // v3
    uint(serial),
    ecdsaSha256,
    name,
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + 2 * 86400_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, privateKey as KeyObject); // DER-encoded ECDSA signature
  const der = seq(tbs, ecdsaSha256, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const certPem = `-----BEGIN CERTIFICATE-----\n${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  return { certPem, keyPem: createPrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' })).export({ type: 'pkcs8', format: 'pem' }) as string };
}

// ---- proxies on loopback

export interface TestProxy {
  /** http://127.0.0.1:PORT, for HTTPS_PROXY. */
  url: string;
  /** The CONNECT targets asked for (host:port), one per tunnel. */
  connects: string[];
  /**
   * Bytes the site sent into the tunnels: as they crossed the proxy (an honest proxy sees only TLS
   * records), or, for the inspecting proxy, after it decrypted them with its own certificate.
   */
  fromSite(): Buffer;
  close(): Promise<void>;
}

/**
 * A CONNECT proxy on loopback (what a hospital's outbound proxy does): opens a TCP tunnel to the
 * target and copies bytes. With `inspect`, a TLS-inspecting proxy: it answers the site's TLS
 * handshake with its own certificate, reads the cleartext, and re-encrypts to the target.
 */
export async function startConnectProxy(inspect?: { certPem: string; keyPem: string }): Promise<TestProxy> {
  const connects: string[] = [];
  const seen: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = http.createServer((_req, res) => {
    res.writeHead(405).end(); // only CONNECT
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const target = req.url ?? '';
    connects.push(target);
    track(client);
    const i = target.lastIndexOf(':');
    const host = target.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(target.slice(i + 1));
    if (head.length) client.unshift(head);
    if (!inspect) {
      const up = net.connect(port, host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        client.on('data', (d: Buffer) => seen.push(d));
        client.pipe(up);
        up.pipe(client);
      });
      track(up);
      up.on('close', () => client.destroy());
      client.on('close', () => up.destroy());
      return;
    }
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    const clear = new tls.TLSSocket(client, { isServer: true, cert: inspect.certPem, key: inspect.keyPem });
    clear.on('error', () => client.destroy());
    clear.on('data', (d: Buffer) => seen.push(d));
    const up = tls.connect({ host, port, rejectUnauthorized: false }); // the inspecting proxy trusts whatever is behind it
    track(up);
    clear.pipe(up);
    up.pipe(clear);
    up.on('close', () => client.destroy());
    client.on('close', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connects,
    fromSite: () => Buffer.concat(seen),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Runs `fn` with these environment variables set (undefined: unset), then restores them. */
export async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const put = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) delete process.env[k];
      else process.env[k] = x;
    }
  };
  put(vars);
  try {
    return await fn();
  } finally {
    put(saved);
  }
}

/** A trainer for site nodes that connect but never train (TLS, rollover, attacks). */
export const idleTrainer: LocalTrainer = {
  backend: 'none',
  dataSummary: () => ({ trainSlices: 0, valPatients: 0 }),
  initialWeights: () => new Float32Array(0),
  train: () => Promise.reject(new Error('this test site does not train')),
  evaluate: () => Promise.reject(new Error('this test site does not evaluate')),
};
