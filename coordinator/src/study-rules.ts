/**
 * The rules a lead's study must satisfy to be created and started, without the store: spec
 * parsing and its error codes, the DP budget, HE parameters, the roster. The engine looks up
 * what they need (site rows) and writes what they return.
 */
import { MIN_CONTRIBUTORS, StudyDraftSchema, StudySpecSchema, WireError, quorumOf, secaggThresholdFor, type RosterEntry, type StudyDraft, type StudyManifest } from '@twinfed/protocols';
import { dpStepsPerRound, epsilonFor, noiseMultiplierFor } from '@twinfed/shared/dp/accountant';
import { siteNoiseAllowance } from '@twinfed/shared/dp/site-level';
import { checkHeParams, ciphertextCount, createHeContext, lanesOf, maxSamplesPerSiteFor, maxTotalSamples, type HeParams } from '@twinfed/shared/he/index';
import { updateLength } from '@twinfed/shared/model/update-length';
import type { z } from 'zod';
import type { SiteRow } from './store/index.js';

export type StudySpecOut = z.infer<typeof StudySpecSchema>;

/**
 * Parses a lead's spec. minSites below 3 is refused with TWF_E_TOO_FEW_CONTRIBUTORS: with two
 * contributors each learns the other's update. A non-linear strategy is TWF_E_STRATEGY_NOT_LINEAR,
 * anything else invalid TWF_E_BAD_REQUEST naming up to five fields. The DP section comes back
 * resolved (resolveDp).
 */
export function parseStudySpec(spec: unknown): StudySpecOut {
  const ms = (spec as { minSites?: unknown } | null)?.minSites;
  if (typeof ms === 'number' && ms < MIN_CONTRIBUTORS) {
    throw new WireError('TWF_E_TOO_FEW_CONTRIBUTORS', `minSites ${ms}: at least ${MIN_CONTRIBUTORS} contributors are needed, or each could learn another's update from the aggregate`);
  }
  const p = StudySpecSchema.safeParse(spec);
  if (!p.success) {
    const msg = p.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`)
      .join('; ');
    throw new WireError(p.error.issues.some((i) => i.path[0] === 'strategy' && i.message.includes('TWF_E_STRATEGY_NOT_LINEAR')) ? 'TWF_E_STRATEGY_NOT_LINEAR' : 'TWF_E_BAD_REQUEST', msg);
  }
  if (p.data.task === 'twin-prior') {
    // The prior is a one-shot sum of statistics: FedAvg's mean × contributors gives it back; a server
    // optimiser would not. DP noise on the statistics is not implemented (docs/security.md): refused
    // rather than silently ignored.
    if (p.data.strategy && p.data.strategy.name !== 'fedavg')
      throw new WireError('TWF_E_BAD_REQUEST', `strategy: a twin-prior study sums statistics; only fedavg (or none) applies, not ${p.data.strategy.name}`);
    if (p.data.dp)
      throw new WireError('TWF_E_DP_PARAMS', 'dp: differential privacy is not implemented for twin-prior studies (each patient is clipped to the parameter box, no noise is added; docs/security.md)');
  }
  if (p.data.dp) p.data.dp = resolveDp(p.data);
  return p.data;
}

/**
 * The study's DP section as the officers approve it: a spec without `noiseMultiplier` gets the
 * smallest sigma that keeps the whole study within its (epsilon, delta) by the sites' accountant
 * (shared/src/dp/accountant.ts); a spec with one that would overspend is refused now rather than
 * by every site at the round that crosses the budget.
 */
export function resolveDp(spec: Pick<StudySpecOut, 'dp' | 'rounds' | 'training'>): NonNullable<StudySpecOut['dp']> {
  const dp = spec.dp!;
  const samplingRate = dp.level === 'patient' ? dp.samplingRate : 1;
  const steps = dp.level === 'patient' ? spec.rounds * dpStepsPerRound(spec.training.epochsPerRound, samplingRate) : spec.rounds;
  if (dp.noiseMultiplier === undefined) return { ...dp, noiseMultiplier: noiseMultiplierFor({ samplingRate, steps, delta: dp.delta, epsilon: dp.epsilon }) };
  const e = epsilonFor({ samplingRate, noiseMultiplier: dp.noiseMultiplier, steps, delta: dp.delta });
  if (e.epsilon > dp.epsilon * (1 + 1e-9)) {
    throw new WireError(
      'TWF_E_DP_PARAMS',
      `dp.noiseMultiplier: ${dp.noiseMultiplier} over ${spec.rounds} rounds (${steps} compositions at sampling rate ${samplingRate}) spends epsilon ${e.epsilon.toFixed(3)} at delta ${dp.delta}, above the budget ${dp.epsilon}; leave it out to have it derived, or raise it to ${noiseMultiplierFor({ samplingRate, steps, delta: dp.delta, epsilon: dp.epsilon })}`,
    );
  }
  return dp;
}

/**
 * Rejects, at study creation, encryption parameters the HE layer would reject later (when a
 * dealer or the coordinator builds the context): TWF_E_HE_PARAMS (422) naming the field.
 */
export async function validateHeParams(p: HeParams): Promise<void> {
  const bad = (why: string): never => {
    throw new WireError('TWF_E_HE_PARAMS', `encryption: ${why}`);
  };
  try {
    checkHeParams(p);
  } catch (e) {
    bad((e as Error).message);
  }
  if (p.plainModulusBits > 48) bad('plainModulusBits: secure aggregation draws its masks mod t from 48-bit words (shared/src/secagg/prg.ts, t < 2^48); at most 48 bits');
  try {
    await createHeContext(p);
  } catch (e) {
    bad(`the HE library rejects these parameters: ${(e as Error).message}`);
  }
}

/** Updates of this many ciphertexts or more get DEFAULT_LARGE_CIPHERTEXTS_PER_CHUNK when the spec names none. */
export const LARGE_UPDATE_CIPHERTEXTS = 64;
export const DEFAULT_LARGE_CIPHERTEXTS_PER_CHUNK = 8;

/**
 * The ciphertextsPerChunk a draft gets when its spec leaves it out: 8 for an update of at least 64
 * ciphertexts (a large model, where each update.chunk's fixed cost to the coordinator, about a
 * millisecond whatever it carries, dominates: docs/scaling.md), none (one per chunk) below, so
 * small models' manifests are unchanged.
 */
export function defaultCiphertextsPerChunk(ciphertexts: number): number | undefined {
  return ciphertexts >= LARGE_UPDATE_CIPHERTEXTS ? DEFAULT_LARGE_CIPHERTEXTS_PER_CHUNK : undefined;
}

/** The draft a parsed spec becomes: its id, the validated encryption, the update length its model implies. */
export function studyDraft(spec: StudySpecOut, encryption: HeParams, at: { studyId: string; coordinatorId: string; createdAtMs: number }): StudyDraft {
  const length = updateLength(spec.model);
  const perChunk = spec.ciphertextsPerChunk ?? defaultCiphertextsPerChunk(ciphertextCount(encryption, length));
  return StudyDraftSchema.parse({
    ...spec,
    ...(perChunk === undefined ? {} : { ciphertextsPerChunk: perChunk }),
    studyId: at.studyId,
    encryption,
    coordinatorId: at.coordinatorId,
    createdAt: new Date(at.createdAtMs).toISOString(),
    updateLength: length,
    secureAggregation: 'double-mask-v1',
  });
}

/**
 * Checks a roster against the study's settings; returns its entries (keys from enrolment).
 * `sites` holds the enrolled rows of the listed ids (an id missing from it is not enrolled).
 */
export function buildRoster(draft: StudyDraft, siteIds: string[], keyDealers: string[], sites: ReadonlyMap<string, SiteRow>): { participants: RosterEntry[]; keyDealers: string[] } {
  if (new Set(siteIds).size !== siteIds.length) throw new WireError('TWF_E_BAD_REQUEST', 'a site is listed twice in the roster');
  const participants = siteIds.map((id) => {
    const s = sites.get(id);
    if (!s) throw new WireError('TWF_E_UNKNOWN_SITE', `${id} is not enrolled`);
    if (s.revokedAtMs !== null) throw new WireError('TWF_E_SITE_REVOKED', `${id} was revoked`);
    return { siteId: s.siteId, siteName: s.siteName, ed25519PublicKey: s.ed25519PublicKey, x25519PublicKey: s.x25519PublicKey };
  });
  const n = participants.length;
  if (n < MIN_CONTRIBUTORS) throw new WireError('TWF_E_TOO_FEW_CONTRIBUTORS', `the roster has ${n} sites; at least ${MIN_CONTRIBUTORS}`);
  if (n > 255) throw new WireError('TWF_E_BAD_REQUEST', `the roster has ${n} sites; secure aggregation shares secrets among at most 255`);
  if (draft.minSites > n) throw new WireError('TWF_E_TOO_FEW_CONTRIBUTORS', `minSites ${draft.minSites} is more than the ${n} sites of the roster`);
  const t = secaggThresholdFor(n);
  if (draft.minSites < t)
    throw new WireError(
      'TWF_E_TOO_FEW_CONTRIBUTORS',
      `minSites ${draft.minSites} is below the secure-aggregation threshold t = ${t} of a ${n}-site roster (a majority, at least 3): raise minSites to ${t}`,
    );
  checkRoundCapacity(draft, n);
  for (const d of keyDealers) if (!siteIds.includes(d)) throw new WireError('TWF_E_BAD_REQUEST', `key dealer ${d} is not in the roster`);
  return { participants, keyDealers };
}

/**
 * Refuses (TWF_E_BAD_REQUEST, saying what to lower) a roster of n sites whose weighted sum could
 * leave its lane: n × training.maxSamplesPerSite × 2^p, plus under site-level DP the noise
 * allowance of n contributions (siteNoiseAllowance, 12 standard deviations), must fit the lane
 * capacity C of the encryption (shared/src/he/lanes.ts; (t - 1)/2 with one value per slot). With
 * it, no honest round can end in TWF_E_HE_OVERFLOW.
 */
function checkRoundCapacity(draft: StudyDraft, n: number): void {
  const enc = draft.encryption as HeParams;
  const w = draft.training.maxSamplesPerSite;
  const dp = draft.dp;
  const noiseQ =
    dp?.level === 'site'
      ? siteNoiseAllowance({ noiseMultiplier: dp.noiseMultiplier ?? 0, clipNorm: dp.clipNorm, clipBound: draft.training.clipBound, precisionBits: enc.precisionBits, minSites: quorumOf(draft) }, n)
          .sumQ
      : 0;
  const cap = maxSamplesPerSiteFor(enc, n, noiseQ);
  if (w <= cap) return;
  const maxTotal = maxTotalSamples(enc);
  const noise = noiseQ > 0 ? ` beside the site-level DP noise (${Math.ceil(noiseQ / 2 ** enc.precisionBits)} samples' worth)` : '';
  const other = `${lanesOf(enc) > 1 ? `encryption.lanes ${lanesOf(enc)}, ` : ''}encryption.precisionBits ${enc.precisionBits}${noise ? ', dp.clipNorm' : ''} or the roster`;
  throw new WireError(
    'TWF_E_BAD_REQUEST',
    cap > 0
      ? `training.maxSamplesPerSite ${w} × ${n} sites exceeds ${maxTotal}, the most samples one encrypted sum can hold${noise}; lower it to ${cap} (or lower ${other})`
      : `even one sample per site × ${n} sites exceeds what one encrypted sum can hold (${maxTotal} samples${noise}); lower ${other}`,
  );
}

/**
 * The roster a change asks for: the current participants less `remove` (each must be in the
 * roster) plus `add` (those already in it ignored), in that order; key dealers keep their order,
 * newcomers last. `draftPart` is the manifest without its roster, for the next version.
 */
export function changedRoster(m: StudyManifest, req: { add?: string[]; remove?: string[] }) {
  const remove = new Set(req.remove ?? []);
  for (const r of remove) if (!m.participants.some((p) => p.siteId === r)) throw new WireError('TWF_E_BAD_REQUEST', `${r} is not in the roster`);
  const siteIds = [...m.participants.map((p) => p.siteId).filter((id) => !remove.has(id)), ...(req.add ?? []).filter((id) => !m.participants.some((p) => p.siteId === id))];
  const keyDealers = [...m.keyDealers.filter((d) => siteIds.includes(d)), ...siteIds.filter((id) => !m.keyDealers.includes(id))];
  const { manifestVersion: _v, participants: _p, keyDealers: _k, ...draftPart } = m;
  return { remove, siteIds, keyDealers, draftPart };
}
