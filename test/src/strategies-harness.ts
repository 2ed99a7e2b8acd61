/** Helpers of the strategy tests (strategies*.test.ts): response sites that record each study's plaintext updates. */
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StudyManifest } from '@twinfed/protocols';
import { BUILTIN_MAPPINGS, createResponseTrainer, importPath, openSiteStore, type LocalTrainer } from '@twinfed/site-node';
import { averageFromCentred } from '@twinfed/shared/he/index';
import { enrolNewSite } from './harness.js';

const FIX = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../fixtures/growth-laleh2022');

/** Each round's plaintext update per study (the harness's recordingTrainer keys by round only). */
export type StudyDeltaLog = Map<string, { delta: Float32Array; n: number }>;
export function recordPerStudy(real: LocalTrainer): { trainer: LocalTrainer; log: StudyDeltaLog } {
  const log: StudyDeltaLog = new Map();
  return {
    log,
    trainer: {
      backend: real.backend,
      dataSummary: (m) => real.dataSummary(m),
      initialWeights: (m) => real.initialWeights(m),
      evaluate: (m, w) => real.evaluate(m, w),
      async train(m, w, round) {
        const r = await real.train(m, w, round);
        log.set(`${m.studyId}:${round}`, { delta: r.weights.map((x, k) => x - w[k]), n: r.nSamples });
        return r;
      },
    },
  };
}

/** A response site on one of the Laleh et al. 2022 trial files, imported with `site import`'s code path. */
export async function responseSite(url: string, dir: string, name: string, csv: string) {
  await enrolNewSite(url, dir, name);
  const { db, audit } = await openSiteStore(dir);
  const rep = await importPath(db, audit, join(FIX, csv), { mapping: BUILTIN_MAPPINGS.laleh, refit: false });
  assert.ok(
    rep.rows.some((r) => r.status === 'imported'),
    JSON.stringify(rep.rows),
  );
  const { trainer, log } = recordPerStudy(createResponseTrainer(db));
  return { trainer, log, dir };
}

/**
 * The mean every site decrypts, recomputed in plaintext from the recorded updates: each clipped,
 * scaled by n·2^p/B and rounded as quantizeToZt does, summed as integers, divided as
 * averageFromCentred does. (Masks cancel and the sum never wraps, so the decrypted centred sum is
 * this integer sum.)
 */
export function plainMean(m: StudyManifest, parts: { delta: Float32Array; n: number }[]): Float32Array {
  const B = m.training.clipBound;
  const p = m.encryption!.precisionBits;
  const S = 2 ** p / B;
  const sums = new Float64Array(m.updateLength);
  for (const { delta, n } of parts) {
    for (let i = 0; i < sums.length; i++) {
      const x = delta[i] > B ? B : delta[i] < -B ? -B : delta[i];
      sums[i] += Math.round(x * (n * S));
    }
  }
  return averageFromCentred(
    sums,
    parts.reduce((s, c) => s + c.n, 0),
    B,
    p,
  );
}
