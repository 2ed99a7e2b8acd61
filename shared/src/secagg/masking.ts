/**
 * Double masking (Bonawitz et al., "Practical Secure Aggregation for
 * Privacy-Preserving Machine Learning", CCS 2017, sec. 4, round 2
 * "MaskedInputCollection" and round 4 "Unmasking"), in Z_t:
 *
 *   y_u = q_u + PRG(b_u) + Σ_{v in K, v != u} sign(u,v)·PRG(s_{u,v})   (mod t)
 *
 * with sign(u,v) = +1 when u < v and -1 otherwise, K the round's key set and
 * s_{u,v} = s_{v,u} the seed both ends derive from X25519 (RFC 7748). Over
 * the survivors U ⊆ K, the pairwise masks between two survivors cancel, so
 *
 *   Σ_{u in U} y_u = Σ_{u in U} q_u + Σ_{u in U} PRG(b_u)
 *                  + Σ_{u in U, v in K\U} sign(u,v)·PRG(s_{u,v})       (mod t),
 *
 * and whoever holds b_u of every survivor and s_v^SK of every dropped site
 * (reconstructed from t shares) removes the rest. A single y_u is q_u plus
 * PRG(b_u): uniform on Z_t to anyone without b_u, even with every pairwise
 * seed (that is why the self mask is there: a site reported dropped whose
 * input arrives late stays hidden).
 */
import { sodium } from '../crypto/sodium.js';
import { DOMAIN, checkSiteId, concatBytes, roundBinding, type RoundContext } from './context.js';
import { SecaggError } from './errors.js';
import { checkKeyBytes, x25519, type RoundSecrets } from './keys.js';
import { addMaskInto } from './prg.js';
import { secaggThreshold } from './shamir.js';
import { checkInZt, checkPlainModulus } from './zt.js';

/**
 * 32-byte seed of the pairwise mask between two sites: BLAKE2b-256 keyed by
 * the X25519 shared secret (RFC 7748 sec. 6.1 asks to hash the shared secret
 * with both public keys rather than use it directly), over the domain, the
 * context, the two site ids in sorted order and the two public keys in the
 * same order, so both ends derive the same seed.
 */
export function pairwiseSeed(ctx: RoundContext, selfId: string, selfSk: Uint8Array, peerId: string, peerPk: Uint8Array): Uint8Array {
  checkSiteId(selfId);
  checkSiteId(peerId);
  if (selfId === peerId) throw new SecaggError('TWF_E_SECAGG_PEERS', `a site has no pairwise mask with itself (${selfId})`);
  const s = sodium();
  const shared = x25519(selfSk, peerPk);
  const selfPk = s.crypto_scalarmult_base(selfSk);
  const selfFirst = selfId < peerId;
  const ids = selfFirst ? [selfId, peerId] : [peerId, selfId];
  const pks = selfFirst ? [selfPk, peerPk] : [peerPk, selfPk];
  try {
    return s.crypto_generichash(32, concatBytes(roundBinding(DOMAIN.pairSeed, ctx, ids), pks[0], pks[1]), shared);
  } finally {
    shared.fill(0);
  }
}

/** 32-byte seed of a site's self mask: BLAKE2b-256 keyed by b over the domain, the context and siteId. */
export function selfMaskSeed(ctx: RoundContext, siteId: string, b: Uint8Array): Uint8Array {
  checkKeyBytes('b', b);
  return sodium().crypto_generichash(32, roundBinding(DOMAIN.selfSeed, ctx, [siteId]), b);
}

/** sign(u, v) of the pairwise mask in u's input: +1 when u < v (JavaScript string order), else -1. */
export function pairSign(u: string, v: string): 1 | -1 {
  return u < v ? 1 : -1;
}

function addPairMask(acc: Float64Array, seed: Uint8Array, t: bigint, sign: 1 | -1): void {
  try {
    addMaskInto(acc, seed, t, sign);
  } finally {
    seed.fill(0);
  }
}

/**
 * The masked input y = q + PRG(b) + Σ_{v in peers} sign(u,v)·PRG(s_uv) mod t,
 * with sign(u,v) = +1 when selfId < peerId (JavaScript string order) and −1
 * otherwise. q must already be in [0, t). peers = the other sites of the
 * round's key set (never contains selfId; TWF_E_SECAGG_PEERS if it does, or
 * repeats a site); 1 + peers.length must be a valid round size (3..255).
 */
export function maskInput(ctx: RoundContext, t: bigint, selfId: string, secrets: RoundSecrets, q: Float64Array, peers: { siteId: string; sPk: Uint8Array }[]): Float64Array {
  const tn = checkPlainModulus(t);
  checkSiteId(selfId);
  checkInZt('q', q, tn);
  if (!Array.isArray(peers)) throw new SecaggError('TWF_E_SECAGG_PEERS', 'peers must be an array');
  secaggThreshold(peers.length + 1); // 3..255 sites
  const seen = new Set<string>();
  for (const p of peers) {
    checkSiteId(p?.siteId);
    if (p.siteId === selfId) throw new SecaggError('TWF_E_SECAGG_PEERS', `peers contain the site itself (${selfId})`);
    if (seen.has(p.siteId)) throw new SecaggError('TWF_E_SECAGG_PEERS', `peer ${p.siteId} is listed twice`);
    seen.add(p.siteId);
    checkKeyBytes(`sPk of ${p.siteId}`, p.sPk);
  }
  const y = Float64Array.from(q);
  addPairMask(y, selfMaskSeed(ctx, selfId, secrets.b), t, 1);
  for (const p of peers) addPairMask(y, pairwiseSeed(ctx, selfId, secrets.sSk, p.siteId, p.sPk), t, pairSign(selfId, p.siteId));
  return y;
}

/**
 * Removes the masks from a decrypted sum of the survivors' masked inputs, in
 * place (mod t):
 *   sum −= Σ_{u in survivors} PRG(b_u) + Σ_{u in survivors, v in dropped} sign(u,v)·PRG(s_uv),
 * where s_uv is derived from v's reconstructed sSk and u's public sPk
 * (survivorPks). After this, sum = Σ_{u in survivors} q_u mod t.
 * `dropped` must list every site of the key set that is not a survivor;
 * TWF_E_SECAGG_PEERS when the lists overlap, repeat a site, or a survivor has
 * no public key.
 */
export function unmaskSum(
  ctx: RoundContext,
  t: bigint,
  sum: Float64Array,
  survivors: { siteId: string; b: Uint8Array }[],
  dropped: { siteId: string; sSk: Uint8Array }[],
  survivorPks: Map<string, Uint8Array>,
): void {
  const tn = checkPlainModulus(t);
  checkInZt('sum', sum, tn);
  if (!Array.isArray(survivors) || survivors.length === 0) throw new SecaggError('TWF_E_SECAGG_PEERS', 'no survivors');
  if (!Array.isArray(dropped)) throw new SecaggError('TWF_E_SECAGG_PEERS', 'dropped must be an array');
  if (!(survivorPks instanceof Map)) throw new SecaggError('TWF_E_SECAGG_PEERS', 'survivorPks must be a Map');
  const seen = new Set<string>();
  for (const x of [...survivors, ...dropped]) {
    checkSiteId(x?.siteId);
    if (seen.has(x.siteId)) throw new SecaggError('TWF_E_SECAGG_PEERS', `site ${x.siteId} is listed twice among survivors and dropped sites`);
    seen.add(x.siteId);
  }
  for (const u of survivors) {
    checkKeyBytes(`b of ${u.siteId}`, u.b);
    const pk = survivorPks.get(u.siteId);
    if (dropped.length > 0 && pk === undefined) throw new SecaggError('TWF_E_SECAGG_PEERS', `no public key for survivor ${u.siteId}`);
    if (pk !== undefined) checkKeyBytes(`sPk of ${u.siteId}`, pk);
  }
  for (const v of dropped) checkKeyBytes(`sSk of ${v.siteId}`, v.sSk);

  for (const u of survivors) addPairMask(sum, selfMaskSeed(ctx, u.siteId, u.b), t, -1);
  for (const u of survivors) {
    const pk = survivorPks.get(u.siteId)!;
    for (const v of dropped) addPairMask(sum, pairwiseSeed(ctx, v.siteId, v.sSk, u.siteId, pk), t, pairSign(u.siteId, v.siteId) === 1 ? -1 : 1);
  }
}
