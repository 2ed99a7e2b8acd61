/**
 * A site's mask set-up for one round (Bonawitz et al., CCS 2017, sec. 4, rounds 0-1, active
 * variant): fresh round secrets (X25519 mask key pair sPk/sSk and self-mask seed b), t-of-n Shamir
 * shares of b and of sSk over the round's participants, each other participant's pair of shares
 * sealed to its roster X25519 key, the commitment to b, and the site's Ed25519 signature over
 * (round, siteId, sPk, bCommit). The one builder of the `mask.setup` body: the site node and the
 * hand-driven test participants all use it.
 */
import { MASK_KEYS_KIND, maskKeysFields } from '@twinfed/protocols';
import { signStatement } from '../crypto/statement.js';
import { toB64 } from '../crypto/sodium.js';
import { sealShares } from './boxes.js';
import type { RoundContext } from './context.js';
import { generateRoundSecrets, selfMaskCommitment, type RoundSecrets } from './keys.js';
import { splitSecret } from './shamir.js';

export interface MaskSetup {
  /** The `mask.setup` body: sPk and the box recipients' shares, the commitment to b, the signature. */
  body: { sPk: string; bCommit: string; signature: string; boxes: { to: string; box: string }[] };
  secrets: RoundSecrets;
  /** This site's own share of b and of sSk (kept; it is one of the n). */
  own: { bShare: Uint8Array; sShare: Uint8Array };
}

export async function buildMaskSetup(
  ctx: RoundContext,
  siteId: string,
  participants: readonly string[],
  threshold: number,
  /** Roster X25519 public key of a participant. */
  x25519Of: (siteId: string) => Uint8Array,
  keys: { x25519SecretKey: Uint8Array; ed25519SecretKey: Uint8Array },
): Promise<MaskSetup> {
  const secrets = generateRoundSecrets();
  const n = participants.length;
  const [bShares, sShares] = [await splitSecret(secrets.b, n, threshold), await splitSecret(secrets.sSk, n, threshold)];
  const boxes = participants.flatMap((p, i) => (p === siteId ? [] : [{ to: p, box: sealShares(ctx, siteId, p, { bShare: bShares[i], sShare: sShares[i] }, keys.x25519SecretKey, x25519Of(p)) }]));
  const me = participants.indexOf(siteId);
  const bCommit = selfMaskCommitment(ctx, siteId, secrets.b);
  const sPk = toB64(secrets.sPk);
  const signature = signStatement(MASK_KEYS_KIND, maskKeysFields(ctx, siteId, sPk, bCommit), keys.ed25519SecretKey);
  return { body: { sPk, bCommit, signature, boxes }, secrets, own: { bShare: bShares[me], sShare: sShares[me] } };
}
