import { createPrivateKey, sign as opensslSign, type KeyObject } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { fromB64, sodium, toB64 } from './sodium.js';

/**
 * A party's long-term identity: Ed25519 (RFC 8032) to sign envelopes and audit
 * entries, X25519 (RFC 7748) to receive sealed boxes (libsodium crypto_box_seal).
 */
export interface Identity {
  ed25519PublicKey: Uint8Array;
  ed25519SecretKey: Uint8Array;
  x25519PublicKey: Uint8Array;
  x25519SecretKey: Uint8Array;
}

const IdentityFile = z.object({
  kind: z.literal('twinfed-identity'),
  ed25519PublicKey: z.string(),
  ed25519SecretKey: z.string(),
  x25519PublicKey: z.string(),
  x25519SecretKey: z.string(),
});

export function generateIdentity(): Identity {
  const s = sodium();
  const sign = s.crypto_sign_keypair();
  const box = s.crypto_box_keypair();
  return { ed25519PublicKey: sign.publicKey, ed25519SecretKey: sign.privateKey, x25519PublicKey: box.publicKey, x25519SecretKey: box.privateKey };
}

/** Writes the identity readable by its owner only (mode 0600). */
export function saveIdentity(path: string, id: Identity): void {
  const json = JSON.stringify(
    {
      kind: 'twinfed-identity',
      ed25519PublicKey: toB64(id.ed25519PublicKey),
      ed25519SecretKey: toB64(id.ed25519SecretKey),
      x25519PublicKey: toB64(id.x25519PublicKey),
      x25519SecretKey: toB64(id.x25519SecretKey),
    },
    null,
    2,
  );
  writeFileSync(path, json, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export function loadIdentity(path: string): Identity {
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new Error(`identity file ${path} is readable by others (mode ${mode.toString(8)}); run chmod 600 ${path}`);
  }
  const f = IdentityFile.parse(JSON.parse(readFileSync(path, 'utf8')));
  return {
    ed25519PublicKey: fromB64(f.ed25519PublicKey),
    ed25519SecretKey: fromB64(f.ed25519SecretKey),
    x25519PublicKey: fromB64(f.x25519PublicKey),
    x25519SecretKey: fromB64(f.x25519SecretKey),
  };
}

/** PKCS #8 DER prefix of an Ed25519 private key (RFC 8410 §7), before its 32-byte seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const signingKeys = new WeakMap<Uint8Array, KeyObject>();

/**
 * Ed25519 signature (RFC 8032). Signing is deterministic, so OpenSSL's (node:crypto) and
 * libsodium's signatures are the same bytes; OpenSSL's takes about half the time of libsodium's
 * WebAssembly, and the coordinator signs twice per chunk it accepts (audit entry, receipt).
 * Verification stays libsodium's (its checks of edge cases are the ones the protocol relies on).
 */
export function sign(message: Uint8Array, ed25519SecretKey: Uint8Array): Uint8Array {
  if (ed25519SecretKey.length !== 64) return sodium().crypto_sign_detached(message, ed25519SecretKey);
  let key = signingKeys.get(ed25519SecretKey);
  if (!key) {
    key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, ed25519SecretKey.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
    signingKeys.set(ed25519SecretKey, key);
  }
  return new Uint8Array(opensslSign(null, message, key));
}

export function verify(signature: Uint8Array, message: Uint8Array, ed25519PublicKey: Uint8Array): boolean {
  try {
    return sodium().crypto_sign_verify_detached(signature, message, ed25519PublicKey);
  } catch {
    return false;
  }
}

/** Anonymous sealed box to an X25519 public key (libsodium crypto_box_seal). */
export function sealTo(x25519PublicKey: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return sodium().crypto_box_seal(plaintext, x25519PublicKey);
}

export function openSealed(sealed: Uint8Array, id: Pick<Identity, 'x25519PublicKey' | 'x25519SecretKey'>): Uint8Array {
  return sodium().crypto_box_seal_open(sealed, id.x25519PublicKey, id.x25519SecretKey);
}

/**
 * A site's fingerprint as officers compare it out of band: the fingerprints of its Ed25519 and
 * X25519 public keys, `ed:x`. One format everywhere it is shown (study roster, lead API, site doctor).
 */
export function siteFingerprint(ed25519PublicKey: Uint8Array | string, x25519PublicKey: Uint8Array | string): string {
  const bytes = (k: Uint8Array | string) => (typeof k === 'string' ? fromB64(k) : k);
  return `${fingerprint(bytes(ed25519PublicKey))}:${fingerprint(bytes(x25519PublicKey))}`;
}

/** Short human-checkable fingerprint of a public key (first 16 hex of its SHA-256-based generic hash). */
export function fingerprint(publicKey: Uint8Array): string {
  return Buffer.from(sodium().crypto_generichash(8, publicKey)).toString('hex');
}
