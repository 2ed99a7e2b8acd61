import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { TLS_PIN_RE, certificatePin, normalizeTlsPin } from './tls-pin.js';

/**
 * A self-signed P-256 certificate; its expected pin was computed with OpenSSL 3.0, independently
 * of this code (the RFC 7469 recipe):
 *   openssl x509 -in c.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64
 */
const CERT = `-----BEGIN CERTIFICATE-----
MIIBlTCCATqgAwIBAgIUA8w8FZipZ4fo9zklUVnsRkUKO/YwCgYIKoZIzj0EAwIw
FzEVMBMGA1UEAwwMdHdpbmZlZC10ZXN0MB4XDTI2MTEyNzIyMTkzOVoXDTI2MTEy
OTIyMTkzOVowFzEVMBMGA1UEAwwMdHdpbmZlZC10ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEJ06hshmxUMuFdQ4cWxMH7jAbkRCpJBufxJq/7e3fnXuGc3O9
hC2IJKTxRNa3ZuRf/QjP9eaZkYh/jINhw7VIL6NkMGIwHQYDVR0OBBYEFAX2gj/+
a2uVFGAFiKGKk3QG+WTmMB8GA1UdIwQYMBaAFAX2gj/+a2uVFGAFiKGKk3QG+WTm
MA8GA1UdEwEB/wQFMAMBAf8wDwYDVR0RBAgwBocEfwAAATAKBggqhkjOPQQDAgNJ
ADBGAiEAu7t9MAjFtmJfon9m0KIZFVRgX+h6Qw+wUA/HS2iT2XsCIQCA3lji5WVE
+l1dMHMD4S6aLSL3qIefqLpIS2sPssmC3w==
-----END CERTIFICATE-----
`;
const OPENSSL_PIN = 'sha256/0LHgdeMO3ARdL4lScbA5NoonLwG6/6lu91yi64gVuSg=';

describe('TLS public-key pins (RFC 7469 pin-sha256)', () => {
  it('hashes the SubjectPublicKeyInfo, as OpenSSL does, from PEM, DER or a parsed certificate', () => {
    const x = new X509Certificate(CERT);
    assert.equal(certificatePin(CERT), OPENSSL_PIN);
    assert.equal(certificatePin(x.raw), OPENSSL_PIN);
    assert.equal(certificatePin(x), OPENSSL_PIN);
    assert.match(OPENSSL_PIN, TLS_PIN_RE);
    // Not the certificate's own fingerprint: a renewal with the same key keeps the pin.
    assert.notEqual(certificatePin(CERT), `sha256/${createHash('sha256').update(x.raw).digest('base64')}`);
  });

  it('accepts the ways people paste a pin and refuses anything else', () => {
    const b64 = OPENSSL_PIN.slice('sha256/'.length);
    for (const t of [OPENSSL_PIN, `sha256//${b64}`, `pin-sha256="${b64}"`, ` ${OPENSSL_PIN}\n`]) assert.equal(normalizeTlsPin(t), OPENSSL_PIN, t);
    for (const t of [b64, `sha1/${b64}`, `sha256/${b64.slice(1)}`, `pin-sha256="${b64}`, `sha256/${b64}"`, '']) assert.equal(normalizeTlsPin(t), null, t);
  });
});
