import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { TLS_ROLLOVER_KIND, tlsRolloverFields, type BodyOf } from '@twinfed/protocols';
import { certificatePin, signStatement } from '@twinfed/shared/crypto/index';
import type { CoordinatorConfig } from './config.js';
import { CoordinatorError } from './errors.js';

/** The pins the coordinator serves now and will serve next (GET /api/tls, tls.rollover). */
export interface TlsPins {
  pin: string;
  nextPin: string | null;
}

/** What fastify's `https` option needs, with the pins. */
export interface CoordinatorTls extends TlsPins {
  cert: Buffer;
  key: Buffer;
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new CoordinatorError('TWF_E_CONFIG', `tls.${what}: ${(e as Error).message}`);
  }
}

function parseCertificate(pem: Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (e) {
    throw new CoordinatorError('TWF_E_CONFIG', `tls.${what}: not a PEM certificate (${(e as Error).message})`);
  }
}

/**
 * Reads the certificate, its key and the optional next certificate; refuses a key that does not
 * belong to the certificate (a start that would fail every handshake) and a next certificate
 * with the same key (no rollover needed: the pin is the same).
 */
export function loadCoordinatorTls(tls: NonNullable<CoordinatorConfig['tls']>): CoordinatorTls {
  const cert = readPem(tls.certFile, 'certFile');
  const key = readPem(tls.keyFile, 'keyFile');
  const x = parseCertificate(cert, 'certFile');
  let matches: boolean;
  try {
    matches = x.checkPrivateKey(createPrivateKey(key));
  } catch (e) {
    throw new CoordinatorError('TWF_E_CONFIG', `tls.keyFile: not a PEM private key (${(e as Error).message})`);
  }
  if (!matches) throw new CoordinatorError('TWF_E_CONFIG', `tls.keyFile ${tls.keyFile} is not the key of ${tls.certFile}`);
  const pin = certificatePin(x);
  let nextPin: string | null = null;
  if (tls.nextCertFile) {
    nextPin = certificatePin(parseCertificate(readPem(tls.nextCertFile, 'nextCertFile'), 'nextCertFile'));
    if (nextPin === pin)
      throw new CoordinatorError('TWF_E_CONFIG', `tls.nextCertFile has the same key as tls.certFile (${pin}): a renewal with the same key needs no rollover; leave nextCertFile out`);
  }
  return { cert, key, pin, nextPin };
}

/** The signed tls.rollover body a site checks against the coordinator key it pinned at enrolment. */
export function tlsRolloverBody(coordinatorId: string, pins: { pin: string; nextPin: string }, ed25519SecretKey: Uint8Array, nowMs: number): BodyOf['tls.rollover'] {
  const f = tlsRolloverFields({ coordinatorId, currentPin: pins.pin, nextPin: pins.nextPin, issuedAtMs: nowMs });
  return { currentPin: f.currentPin, nextPin: f.nextPin, issuedAtMs: f.issuedAtMs, signature: signStatement(TLS_ROLLOVER_KIND, f, ed25519SecretKey) };
}
