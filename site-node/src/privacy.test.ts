import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StudyManifest } from '@twinfed/protocols';
import { dpStepsPerRound, epsilonFor } from '@twinfed/shared/dp/accountant';
import { openSiteDb } from './db/index.js';
import { dpLedger } from './db/schema.js';
import { budgetView, datasetKeyOf, formatBudget, recordRound, type PrivacyPolicy } from './privacy.js';

/** The fields of a manifest the ledger reads (the rest of a manifest does not enter the budget). */
function manifest(
  studyId: string,
  over: { epsilon?: number; sigma?: number; q?: number; rounds?: number; task?: 'segmentation' | 'response'; level?: 'patient' | 'site'; dp?: false } = {},
): StudyManifest {
  const dp =
    over.dp === false
      ? undefined
      : over.level === 'site'
        ? { level: 'site' as const, epsilon: over.epsilon ?? 8, delta: 1e-5, clipNorm: 1, noiseMultiplier: over.sigma ?? 1.1 }
        : { level: 'patient' as const, epsilon: over.epsilon ?? 8, delta: 1e-5, clipNorm: 1, samplingRate: over.q ?? 0.1, noiseMultiplier: over.sigma ?? 1.1 };
  const task = over.task ?? 'response';
  return {
    studyId,
    task,
    rounds: over.rounds ?? 5,
    training: { epochsPerRound: 2 },
    data: task === 'response' ? { source: 'twin-measurements' } : { modality: 'PET' },
    ...(dp ? { dp } : {}),
  } as unknown as StudyManifest;
}

describe('privacy ledger', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twinfed-ledger-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const freshDb = () => openSiteDb(join(dir, `site-${n++}.db`));
  const policy: PrivacyPolicy = { maxEpsilon: 10, delta: 1e-5, requireDp: false };

  it('projects the whole study with the accountant and refuses the round beyond the manifest budget', () => {
    const db = freshDb();
    const m = manifest('s1', { sigma: 1.1, q: 0.1, rounds: 5 });
    const T = dpStepsPerRound(2, 0.1);
    const per = (k: number) => epsilonFor({ samplingRate: 0.1, noiseMultiplier: 1.1, steps: k * T, delta: 1e-5 }).epsilon;
    const v0 = budgetView(db, m, policy);
    assert.equal(v0.studySpent, 0);
    assert.ok(Math.abs(v0.projectedStudy! - per(5)) < 1e-12);
    assert.ok(Math.abs(v0.studyAfterRound! - per(1)) < 1e-12);
    // A manifest budget between 2 and 3 rounds: two rounds run, the third is refused.
    const tight = manifest('s1', { epsilon: (per(2) + per(3)) / 2, sigma: 1.1, q: 0.1, rounds: 5 });
    for (const round of [1, 2]) {
      assert.equal(budgetView(db, tight, { ...policy, maxEpsilon: 1000 }).refusal, null, `round ${round}`);
      recordRound(db, tight, round, { ...policy, maxEpsilon: 1000 });
    }
    const v = budgetView(db, tight, { ...policy, maxEpsilon: 1000 });
    assert.match(v.refusal ?? '', /above the manifest's/);
    assert.ok(Math.abs(v.studySpent - per(2)) < 1e-9);
    db.$client.close();
  });

  it('is idempotent per round and composes across studies on the same dataset, not across datasets', () => {
    const db = freshDb();
    const a = manifest('a', { rounds: 3 });
    const b = manifest('b', { rounds: 3 });
    const seg = manifest('seg', { rounds: 3, task: 'segmentation' });
    const first = recordRound(db, a, 1, policy)!;
    assert.deepEqual(recordRound(db, a, 1, policy), first, 'a repeated round (restart) is not charged twice');
    assert.equal(db.select().from(dpLedger).all().length, 1);
    recordRound(db, b, 1, policy);
    recordRound(db, seg, 1, policy);
    const T = dpStepsPerRound(2, 0.1);
    const two = epsilonFor({ samplingRate: 0.1, noiseMultiplier: 1.1, steps: 2 * T, delta: 1e-5 }).epsilon;
    const one = epsilonFor({ samplingRate: 0.1, noiseMultiplier: 1.1, steps: T, delta: 1e-5 }).epsilon;
    const vb = budgetView(db, b, policy);
    assert.ok(Math.abs(vb.datasetSpent - two) < 1e-9, `two studies on ${datasetKeyOf(b)}: ${vb.datasetSpent} vs ${two}`);
    assert.ok(Math.abs(vb.studySpent - one) < 1e-9, 'the study budget counts only its own rounds');
    assert.ok(Math.abs(budgetView(db, seg, policy).datasetSpent - one) < 1e-9, 'segmentation data has its own ledger');
    db.$client.close();
  });

  it("refuses by the site's own maxEpsilon even when the manifest allows more, and by requireDp", () => {
    const db = freshDb();
    const m = manifest('s', { epsilon: 50, rounds: 10 });
    const T = dpStepsPerRound(2, 0.1);
    const e = (k: number) => epsilonFor({ samplingRate: 0.1, noiseMultiplier: 1.1, steps: k * T, delta: 1e-5 }).epsilon;
    const strict: PrivacyPolicy = { maxEpsilon: (e(1) + e(2)) / 2, delta: 1e-5, requireDp: false };
    assert.equal(budgetView(db, m, strict).refusal, null);
    recordRound(db, m, 1, strict);
    assert.match(budgetView(db, m, strict).refusal ?? '', /privacy\.maxEpsilon/);
    assert.equal(budgetView(db, manifest('plain', { dp: false }), policy).refusal, null, 'no DP, no requirement: trains');
    assert.match(budgetView(db, manifest('plain', { dp: false }), { ...policy, requireDp: true }).refusal ?? '', /requireDp/);
    const lines = formatBudget(budgetView(db, m, strict), m, strict).join('\n');
    assert.match(lines, /projected for all 10 rounds: epsilon \d+\.\d{3}/);
    assert.match(lines, /will refuse the rounds beyond its budget/);
    db.$client.close();
  });

  it('charges what the trainer reports it ran, and a site-level round as one composition', () => {
    const db = freshDb();
    const m = manifest('s', { rounds: 3 });
    const r = recordRound(db, m, 1, policy, { steps: 3, samplingRate: 0.1, noiseMultiplier: 1.1 })!;
    assert.ok(Math.abs(r.epsilonStudy - epsilonFor({ samplingRate: 0.1, noiseMultiplier: 1.1, steps: 3, delta: 1e-5 }).epsilon) < 1e-9);
    const site = manifest('site', { level: 'site', sigma: 2, rounds: 3 });
    const s = recordRound(db, site, 1, policy)!;
    assert.ok(Math.abs(s.epsilonStudy - epsilonFor({ samplingRate: 1, noiseMultiplier: 2, steps: 1, delta: 1e-5 }).epsilon) < 1e-9);
    db.$client.close();
  });
});
