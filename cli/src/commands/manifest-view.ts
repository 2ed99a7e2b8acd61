import type { StudyManifest } from '@twinfed/protocols';
import { secaggThresholdFor, quorumOf } from '@twinfed/protocols';
import { initSodium, siteFingerprint } from '@twinfed/shared/crypto/index';

/**
 * A manifest in the terms a privacy officer approves it: what is trained, who takes part (with the
 * key fingerprints to compare out of band — they come from the coordinator), who deals the study
 * key, what leaves the hospital and how often, and the privacy settings. The hash at the end is what
 * `twinfed site approve --hash` binds the approval to.
 */
export async function formatManifestForOfficer(m: StudyManifest, hash: string, selfId?: string, privacyLines?: string[]): Promise<string> {
  await initSodium();
  const slots = m.encryption.polyModulusDegree;
  const ciphertexts = Math.ceil(m.updateLength / slots);
  // A seeded symmetric BFV ciphertext: one polynomial of N coefficients of the coefficient modulus, plus a seed and framing.
  const bytesPerCiphertext = slots * 8 + 100;
  const n = m.participants.length;
  const lines = [
    `study ${m.studyId}: ${m.title}`,
    `  task            ${m.task}; model ${m.model.arch} (${m.updateLength.toLocaleString('en')} parameters)`,
    `  rounds          ${m.rounds}; each round needs at least ${quorumOf(m)} contributing sites (minSites ${m.minSites})`,
    `  participants    ${n} sites (manifest version ${m.manifestVersion}); compare each fingerprint with the site itself before approving:`,
    ...m.participants.map((p) => `    ${p.siteId === selfId ? '*' : ' '} ${p.siteId.padEnd(16)} ${p.siteName.padEnd(28)} ${siteFingerprint(p.ed25519PublicKey, p.x25519PublicKey)}`),
    `  key dealers     ${m.keyDealers.join(' -> ')} (the first connected one creates the study key and seals it to the sites above only)`,
    `  leaves the site once per round: one update of ${m.updateLength.toLocaleString('en')} values, clipped to ±${m.training.clipBound}, weighted by at most ${m.training.maxSamplesPerSite} samples,`,
    `                  masked (secure aggregation ${m.secureAggregation}, threshold ${secaggThresholdFor(n)} of ${n}) and encrypted (BFV N=${slots}, ${ciphertexts} ciphertexts, about ${((ciphertexts * bytesPerCiphertext) / 1024).toFixed(0)} KiB);`,
    `                  plus the per-round mask keys and encrypted key shares for the other sites, and validation metrics (suppressed below the site's minimum patient count)`,
    `  never leaves    images, masks, clinical data, the plaintext update; the coordinator cannot decrypt anything it relays`,
    `  training        ${m.training.epochsPerRound} epochs per round, batch ${m.training.batchSize}, learning rate ${m.training.learningRate}, seed ${m.training.seed}`,
    `  strategy        ${strategyLine(m)}`,
    ...(privacyLines ?? [
      m.dp
        ? `  differential privacy: ${m.dp.level}-level, budget (epsilon ${m.dp.epsilon}, delta ${m.dp.delta}), clip norm ${m.dp.clipNorm}, noise multiplier ${m.dp.noiseMultiplier ?? '(derived by the coordinator)'}`
        : `  differential privacy: not enabled in this manifest`,
    ]),
    `  manifest hash   ${hash}`,
  ];
  return lines.join('\n');
}

/** The aggregation strategy and its parameters, as approved (absent = FedAvg). */
function strategyLine(m: StudyManifest): string {
  const s = m.strategy ?? { name: 'fedavg' as const };
  const { name, ...params } = s;
  const p = Object.entries(params)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `${name}${p ? ` (${p})` : ''}${m.strategy ? '' : ' (none named: FedAvg)'}; the coordinator only sums encrypted updates, the rule runs at every site after decryption`;
}
