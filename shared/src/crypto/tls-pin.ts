import { X509Certificate, createHash } from 'node:crypto';

/**
 * TLS public-key pins: the SHA-256 of the certificate's DER SubjectPublicKeyInfo, base64, as
 * HPKP defined them (RFC 7469 §2.4, `pin-sha256`), written `sha256/BASE64`. A pin names a key,
 * not a certificate: renewing a certificate with the same key keeps its pin.
 */
export const TLS_PIN_RE = /^sha256\/[A-Za-z0-9+/]{43}=$/;

/** The pin of a DER SubjectPublicKeyInfo. */
export function spkiPin(spkiDer: Uint8Array): string {
  return `sha256/${createHash('sha256').update(spkiDer).digest('base64')}`;
}

/** The pin of a certificate (PEM text, DER bytes, or a parsed X509Certificate). */
export function certificatePin(cert: string | Uint8Array | X509Certificate): string {
  const x = cert instanceof X509Certificate ? cert : new X509Certificate(typeof cert === 'string' ? cert : Buffer.from(cert));
  return spkiPin(x.publicKey.export({ type: 'spki', format: 'der' }));
}

/**
 * Accepts a pin as people paste it: `sha256/B64`, curl's `sha256//B64`, or RFC 7469's
 * `pin-sha256="B64"`; returns `sha256/B64`, or null when it is none of these.
 */
export function normalizeTlsPin(text: string): string | null {
  const t = text.trim();
  const m = /^(?:sha256\/\/?|pin-sha256=")([A-Za-z0-9+/]{43}=)"?$/.exec(t);
  if (!m) return null;
  if (t.startsWith('pin-sha256=') !== t.endsWith('"')) return null;
  return `sha256/${m[1]}`;
}
