import type { StudyManifest } from '@twinfed/protocols';
import { chunkCount, quorumOf, secaggThresholdFor } from '@twinfed/protocols';
import { initSodium, siteFingerprint } from '@twinfed/shared/crypto/index';
import type { HeParams } from '@twinfed/shared/he/params';
import { ciphertextCount, lanesOf } from '@twinfed/shared/he/lanes';
import { ciphertextWireBytes } from '@twinfed/shared/he/wire';
import type { PrivacyPolicy, BudgetView } from './privacy.js';
import { formatBudget } from './privacy.js';

/**
 * A manifest in the terms a privacy officer approves it: what is trained, who takes part (with the
 * key fingerprints to compare out of band — they come from the coordinator), who deals the study
 * key, what leaves the hospital and how often, and the privacy settings. One structured model,
 * rendered as text (`twinfed site studies --show`, `twinfed site study show`), as JSON (`--json`)
 * and as HTML (the site console's approval page). The hash at the end is what an approval binds to.
 */
export interface ManifestView {
  studyId: string;
  title: string;
  task: StudyManifest['task'];
  model: { arch: string; parameters: number };
  rounds: number;
  /** Contributing sites each round needs (the manifest's quorum). */
  quorum: number;
  minSites: number;
  manifestVersion: number;
  participants: { siteId: string; siteName: string; fingerprint: string; thisSite: boolean }[];
  /** In order: the first connected one creates the study key and seals it to the roster only. */
  keyDealers: string[];
  /** Every kind of message this site sends for the study: what it holds, how large, how often. */
  leaves: { messageType: string; what: string; howOften: string; approxBytes: number | null }[];
  /** Names of the validation metrics the site reports each round (suppressed below minReportPatients). */
  metrics: string[];
  neverLeaves: string;
  training: { epochsPerRound: number; batchSize: number; learningRate: number; seed: number; clipBound: number; maxSamplesPerSite: number };
  strategy: { name: string; params: Record<string, unknown>; named: boolean; line: string };
  /** valuesPerSlot: model values packed into one plaintext slot (encryption.lanes; 1 without). */
  encryption: { scheme: string; polyModulusDegree: number; valuesPerSlot: number; ciphertexts: number; approxBytes: number };
  secureAggregation: { scheme: string; threshold: number; of: number };
  privacy: {
    dp: StudyManifest['dp'] | null;
    /** The ledger's view (site's spend, the study's projected epsilon); null when not computed. */
    budget: BudgetView | null;
    policy: PrivacyPolicy | null;
    /** The same facts as sentences (formatBudget). */
    lines: string[];
  };
  manifestHash: string;
}

export async function manifestView(m: StudyManifest, hash: string, selfId?: string, privacy?: { budget: BudgetView; policy: PrivacyPolicy }): Promise<ManifestView> {
  await initSodium();
  const enc = m.encryption as HeParams;
  const slots = enc.polyModulusDegree;
  const perSlot = lanesOf(enc);
  const ciphertexts = ciphertextCount(enc, m.updateLength);
  // a seeded symmetric BFV ciphertext each: one polynomial of N coefficients, a seed and framing (shared/src/he/wire.ts)
  const updateBytes = ciphertexts * ciphertextWireBytes(enc, 'upload');
  const n = m.participants.length;
  const threshold = secaggThresholdFor(n);
  const metrics =
    m.task === 'segmentation'
      ? ["meanDice (mean Dice on this site's validation patients)"]
      : m.task === 'twin-prior'
        ? ['priorPatients (patients in the consortium prior; the prior itself: mean and covariance of growth parameters, per model)']
        : ["macroAucOvr (macro one-vs-rest AUC on this site's held-out patients)"];
  const strategy = m.strategy ?? { name: 'fedavg' as const };
  const { name, ...params } = strategy;
  const p = Object.entries(params)
    .map(([k, v]) => `${k} ${String(v)}`)
    .join(', ');
  const dealer = m.keyDealers.includes(selfId ?? '');
  return {
    studyId: m.studyId,
    title: m.title,
    task: m.task,
    model: { arch: m.model.arch, parameters: m.updateLength },
    rounds: m.rounds,
    quorum: quorumOf(m),
    minSites: m.minSites,
    manifestVersion: m.manifestVersion,
    participants: m.participants.map((x) => ({ siteId: x.siteId, siteName: x.siteName, fingerprint: siteFingerprint(x.ed25519PublicKey, x.x25519PublicKey), thisSite: x.siteId === selfId })),
    keyDealers: [...m.keyDealers],
    leaves: [
      {
        messageType: 'study.join / study.decline',
        what: 'whether this site takes part, its number of training samples and validation patients (counts only)',
        howOften: 'once per manifest',
        approxBytes: 300,
      },
      {
        messageType: 'keys.sealed',
        what: `the study key sealed to each other roster site's key (only if this site deals the key${dealer ? ': it is a key dealer' : ''})`,
        howOften: 'once per key epoch, by the first connected dealer',
        approxBytes: dealer ? n * 200 : null,
      },
      { messageType: 'mask.setup', what: `this round's public mask keys and encrypted key shares for the other ${n - 1} sites`, howOften: 'once per round', approxBytes: n * 250 },
      {
        messageType: 'update.chunk',
        what:
          m.task === 'twin-prior'
            ? `the sufficient statistics (patient count, sums and sums of products of growth parameters clipped to each model's box, summed residuals) of at least ${m.data.minPatients} and at most ${m.model.maxPatientsPerSite} patients, for ${m.model.models.join(', ')}: ${m.updateLength} values in fixed point, masked and encrypted (BFV N=${slots}, ${perSlot === 1 ? 'one value' : `${perSlot} values`} per slot, ${ciphertexts} ciphertexts); only the sum over the contributing sites is ever decrypted`
            : `one model update of ${m.updateLength.toLocaleString('en')} values, clipped to ±${m.training.clipBound}, weighted by at most ${m.training.maxSamplesPerSite} samples, masked and encrypted (BFV N=${slots}, ${perSlot === 1 ? 'one value' : `${perSlot} values`} per slot, ${ciphertexts} ciphertexts)`,
        howOften: (m.ciphertextsPerChunk ?? 1) > 1 ? `once per round, in ${chunkCount(ciphertexts, m.ciphertextsPerChunk)} messages of up to ${m.ciphertextsPerChunk} ciphertexts` : 'once per round',
        approxBytes: updateBytes,
      },
      {
        messageType: 'mask.consistency / mask.unmask',
        what: 'a signature over the surviving sites, then the mask shares needed to remove masks (never both shares of one site)',
        howOften: 'once per round',
        approxBytes: n * 150,
      },
      {
        messageType: 'metrics.report',
        what: `validation metric (${metrics.map((x) => x.split(' ')[0]).join(', ')}) suppressed below the site's minimum patient count, the number of validation patients, training loss, training/encryption time, upload size`,
        howOften: 'once per round, and once for the initial model',
        approxBytes: 400,
      },
      { messageType: 'round.decline / study.withdraw', what: "a refusal and its reason (privacy budget, officer's withdrawal)", howOften: 'only when the site refuses', approxBytes: 600 },
    ],
    metrics,
    neverLeaves: 'images, masks, clinical data, the plaintext update; the coordinator cannot decrypt anything it relays',
    training: {
      epochsPerRound: m.training.epochsPerRound,
      batchSize: m.training.batchSize,
      learningRate: m.training.learningRate,
      seed: m.training.seed,
      clipBound: m.training.clipBound,
      maxSamplesPerSite: m.training.maxSamplesPerSite,
    },
    strategy: {
      name,
      params,
      named: !!m.strategy,
      line: `${name}${p ? ` (${p})` : ''}${m.strategy ? '' : ' (none named: FedAvg)'}; the coordinator only sums encrypted updates, the rule runs at every site after decryption`,
    },
    encryption: { scheme: m.encryption.scheme, polyModulusDegree: slots, valuesPerSlot: perSlot, ciphertexts, approxBytes: updateBytes },
    secureAggregation: { scheme: m.secureAggregation, threshold, of: n },
    privacy: {
      dp: m.dp ?? null,
      budget: privacy?.budget ?? null,
      policy: privacy?.policy ?? null,
      lines: privacy
        ? formatBudget(privacy.budget, m, privacy.policy).map((l) => l.trim())
        : [
            m.dp
              ? `differential privacy: ${m.dp.level}-level, budget (epsilon ${m.dp.epsilon}, delta ${m.dp.delta}), clip norm ${m.dp.clipNorm}, noise multiplier ${m.dp.noiseMultiplier ?? '(derived by the coordinator)'}`
              : 'differential privacy: not enabled in this manifest',
          ],
    },
    manifestHash: hash,
  };
}

const kib = (b: number) => (b >= 10 * 1024 ? `${(b / 1024).toFixed(0)} KiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b} bytes`);

/** Approximate size in words: "about 57 KiB". */
export function approxSize(bytes: number | null): string {
  return bytes === null ? '-' : `about ${kib(bytes)}`;
}

/** The view as the text the officer reads at a terminal (`privacyLines` overrides the privacy block, for callers that format it themselves). */
export function formatManifestView(v: ManifestView, privacyLines?: string[]): string {
  const lines = [
    `study ${v.studyId}: ${v.title}`,
    `  task            ${v.task}; model ${v.model.arch} (${v.model.parameters.toLocaleString('en')} parameters)`,
    `  rounds          ${v.rounds}; each round needs at least ${v.quorum} contributing sites (minSites ${v.minSites})`,
    `  participants    ${v.participants.length} sites (manifest version ${v.manifestVersion}); compare each fingerprint with the site itself before approving:`,
    ...v.participants.map((p) => `    ${p.thisSite ? '*' : ' '} ${p.siteId.padEnd(16)} ${p.siteName.padEnd(28)} ${p.fingerprint}${p.thisSite ? '  (this site)' : ''}`),
    `  key dealers     ${v.keyDealers.join(' -> ')} (the first connected one creates the study key and seals it to the sites above only)`,
    `  leaves the site (message type, how often, size, what):`,
    ...v.leaves.map((l) => `    ${l.messageType.padEnd(32)} ${l.howOften}; ${approxSize(l.approxBytes)}: ${l.what}`),
    `  metrics sent    ${v.metrics.join('; ')}`,
    `  never leaves    ${v.neverLeaves}`,
    `  protection      secure aggregation ${v.secureAggregation.scheme} (threshold ${v.secureAggregation.threshold} of ${v.secureAggregation.of}); encryption ${v.encryption.scheme} N=${v.encryption.polyModulusDegree}, ${v.encryption.valuesPerSlot} value${v.encryption.valuesPerSlot === 1 ? '' : 's'} per slot`,
    `  training        ${v.training.epochsPerRound} epochs per round, batch ${v.training.batchSize}, learning rate ${v.training.learningRate}, seed ${v.training.seed}`,
    `  strategy        ${v.strategy.line}`,
    ...(privacyLines ?? v.privacy.lines.map((l, i) => (i === 0 ? `  ${l}` : `                  ${l}`))),
    `  manifest hash   ${v.manifestHash}`,
  ];
  return lines.join('\n');
}
