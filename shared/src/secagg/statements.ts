/**
 * Fields of the two statements the round relies on, signed and checked with
 * shared/src/crypto/statement.ts (Ed25519 over canonical JSON with the kind
 * as domain separation):
 *  - keys: a site's round key sPk and its commitment to b, signed by the site
 *    (Bonawitz et al. 2017, sec. 4, round 0, signed in the active variant),
 *    so the coordinator cannot substitute keys (a man in the middle between
 *    sites) and a reconstructed b can be checked;
 *  - survivors: the key set and the survivors the unmasking uses, signed by
 *    whoever fixes them (the coordinator) and checked by every site before it
 *    reveals a share (the consistency check of the active variant), so no
 *    site is "survivor" for some and "dropped" for others.
 */
import { MASK_KEYS_KIND, MASK_SURVIVORS_KIND, maskKeysFields, maskSurvivorsFields } from '@twinfed/protocols';
import type { StatementFields } from '../crypto/statement.js';
import { fromB64 } from '../crypto/sodium.js';
import { checkRoundContext, checkSiteId, type RoundContext } from './context.js';
import { SecaggError } from './errors.js';
import { KEY_BYTES } from './keys.js';

// Kinds and field lists are the wire's (protocols/src/statements.ts); these builders add the checks.
export const SECAGG_KEYS_KIND = MASK_KEYS_KIND;
export const SECAGG_SURVIVORS_KIND = MASK_SURVIVORS_KIND;

/** { studyId, manifestHash, round, siteId, sPk, bCommit } for a SECAGG_KEYS_KIND statement. */
export function keysStatementFields(ctx: RoundContext, siteId: string, sPkB64: string, bCommit: string): StatementFields {
  checkRoundContext(ctx);
  checkSiteId(siteId);
  if (typeof sPkB64 !== 'string' || fromB64(sPkB64).length !== KEY_BYTES) throw new SecaggError('TWF_E_SECAGG_KEY', `sPk of ${siteId} is not ${KEY_BYTES} bytes of base64`);
  if (typeof bCommit !== 'string' || !/^[0-9a-f]{64}$/.test(bCommit)) throw new SecaggError('TWF_E_SECAGG_KEY', `bCommit of ${siteId} is not 64 lowercase hex digits`);
  return maskKeysFields(ctx, siteId, sPkB64, bCommit);
}

function sortedUnique(what: string, ids: string[]): string[] {
  if (!Array.isArray(ids)) throw new SecaggError('TWF_E_SECAGG_PEERS', `${what} must be an array of site ids`);
  ids.forEach(checkSiteId);
  const sorted = [...ids].sort();
  for (let i = 1; i < sorted.length; i++) if (sorted[i] === sorted[i - 1]) throw new SecaggError('TWF_E_SECAGG_PEERS', `${what} lists ${sorted[i]} twice`);
  return sorted;
}

/** { studyId, manifestHash, round, keySet, survivors } for a SECAGG_SURVIVORS_KIND statement; both lists sorted, survivors ⊆ keySet. */
export function survivorsStatementFields(ctx: RoundContext, keySet: string[], survivors: string[]): StatementFields {
  checkRoundContext(ctx);
  const keys = sortedUnique('keySet', keySet);
  const alive = sortedUnique('survivors', survivors);
  const inKeySet = new Set(keys);
  for (const s of alive) if (!inKeySet.has(s)) throw new SecaggError('TWF_E_SECAGG_PEERS', `survivor ${s} is not in the key set`);
  return maskSurvivorsFields(ctx, keys, alive);
}
