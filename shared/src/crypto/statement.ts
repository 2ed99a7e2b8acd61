import { canonicalJson, utf8 } from '@twinfed/protocols';
import { fromB64, toB64 } from './sodium.js';
import { sign, verify } from './identity.js';

/**
 * Signed statements: small JSON facts one party signs so that a third party
 * can check them later, even after they were relayed by someone else (the
 * coordinator relaying a dealer's key handout, a site keeping a coordinator's
 * receipt). The signature (Ed25519, RFC 8032) covers the canonical JSON of
 * `{ kind, ...fields }`; `kind` names the statement type and its version
 * (e.g. 'twinfed.receipt.v1'), so a signature made for one purpose can never
 * be replayed as another (domain separation).
 */
export type StatementFields = Record<string, string | number | boolean | null | readonly string[] | readonly number[]>;

export function statementBytes(kind: string, fields: StatementFields): Uint8Array {
  if ('kind' in fields) throw new TypeError('statement fields must not contain "kind"');
  return utf8(canonicalJson({ ...fields, kind }));
}

/** Ed25519 signature (base64) of the statement. */
export function signStatement(kind: string, fields: StatementFields, ed25519SecretKey: Uint8Array): string {
  return toB64(sign(statementBytes(kind, fields), ed25519SecretKey));
}

/** True when `signatureB64` is a valid signature of the statement under `ed25519PublicKey`. */
export function verifyStatement(kind: string, fields: StatementFields, signatureB64: string, ed25519PublicKey: Uint8Array): boolean {
  let sig: Uint8Array;
  try {
    sig = fromB64(signatureB64);
  } catch {
    return false;
  }
  if (sig.length !== 64) return false;
  return verify(sig, statementBytes(kind, fields), ed25519PublicKey);
}
