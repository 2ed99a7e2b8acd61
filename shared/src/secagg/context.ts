/**
 * The round every key, box, seed and mask is bound to, and the byte strings
 * that bind them. Every hash input of this module starts with a domain string
 * (one per purpose, versioned) and the round context, encoded as canonical
 * JSON (sorted keys, no whitespace; JSON string escaping makes the encoding
 * injective), so a value derived for one purpose, study, manifest, round or
 * pair of sites can never be taken for another.
 */
import { canonicalJson, utf8 } from '@twinfed/protocols';
import { SecaggError } from './errors.js';

/** Binds every key, box and mask to one study round. */
export interface RoundContext {
  studyId: string;
  manifestHash: string;
  round: number;
}

/** Domain strings, one per derived value (see README.md). */
export const DOMAIN = Object.freeze({
  selfCommit: 'twinfed.secagg.self-commit.v1',
  selfSeed: 'twinfed.secagg.self-seed.v1',
  pairSeed: 'twinfed.secagg.pair-seed.v1',
  shareBox: 'twinfed.secagg.share-box.v1',
  prgBlock: 'twinfed.secagg.prg-block.v1',
});

const MAX_ID_CHARS = 1024;

function checkText(what: string, s: unknown): void {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_ID_CHARS) {
    throw new SecaggError('TWF_E_SECAGG_PARAMS', `${what} must be a non-empty string of at most ${MAX_ID_CHARS} characters`);
  }
}

export function checkRoundContext(ctx: RoundContext): void {
  if (!ctx || typeof ctx !== 'object') throw new SecaggError('TWF_E_SECAGG_PARAMS', 'round context missing');
  checkText('studyId', ctx.studyId);
  checkText('manifestHash', ctx.manifestHash);
  if (!Number.isSafeInteger(ctx.round) || ctx.round < 0) throw new SecaggError('TWF_E_SECAGG_PARAMS', `round must be a non-negative integer (got ${String(ctx.round)})`);
}

export function checkSiteId(siteId: string): void {
  checkText('siteId', siteId);
}

/** utf8(canonicalJson({ domain, studyId, manifestHash, round, sites })): the binding prefix of every hash input. */
export function roundBinding(domain: string, ctx: RoundContext, sites: readonly string[]): Uint8Array {
  checkRoundContext(ctx);
  for (const s of sites) checkSiteId(s);
  return utf8(canonicalJson({ domain, manifestHash: ctx.manifestHash, round: ctx.round, sites: [...sites], studyId: ctx.studyId }));
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
