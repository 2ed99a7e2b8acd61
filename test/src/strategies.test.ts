import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { StrategyConfig, StudyManifest } from '@twinfed/protocols';
import type { Coordinator } from '@twinfed/coordinator';
import { SiteNode, formatManifestView, manifestView } from '@twinfed/site-node';
import { PACKED_HE_PARAMS, ciphertextCount, ciphertextWireBytes, type HeParams } from '@twinfed/shared/he/index';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { strategyFor, stateHash } from '@twinfed/shared/strategy/index';
import { createAndStart, startCoordinator, tempDir, waitFor } from './harness.js';
import { plainMean, responseSite, type StudyDeltaLog } from './strategies-harness.js';

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

const STRATEGIES: StrategyConfig[] = [
  { name: 'fedavg' },
  { name: 'fedprox', mu: 0.01 },
  { name: 'fedavgm', serverLearningRate: 1, momentum: 0.9 },
  { name: 'fedadam', serverLearningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
  { name: 'fedyogi', serverLearningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
  { name: 'fedadagrad', serverLearningRate: 0.05, beta1: 0, tau: 1e-3 },
];
const ROUNDS = 2;
/**
 * A seventh study, FedAvg with two values per plaintext slot and TWH2 ciphertexts (layout 2,
 * shared/src/he/lanes.ts). precisionBits 12 instead of PACKED_HE_PARAMS's 13: the lanes hold
 * 3 sites × 340 samples × 2^12 <= 2^22 - 1, and Study3 trains on more than the 170 patients per
 * site that p = 13 would allow three sites.
 */
const PACKED: HeParams = { ...PACKED_HE_PARAMS, precisionBits: 12 };
const PACKED_NAME = 'fedavg, 2 values per slot';

/**
 * One coordinator, three response sites (Study1-3), one study per strategy, all six running at
 * once, two rounds each: the coordinator only ever sums ciphertexts, and every site applies the
 * strategy after decryption with the same float64 arithmetic, so the three sites must end with
 * the same model bits and the same optimiser-state hash in every study.
 */
describe('every linear strategy (six studies) and FedAvg with two values per slot, at once on three response sites', () => {
  const tmp = tempDir('strategies');
  let c: Coordinator;
  const nodes: SiteNode[] = [];
  const logs: StudyDeltaLog[] = [];
  const studies = new Map<string, { studyId: string; manifest: StudyManifest }>();

  before(async () => {
    let url: string;
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    for (const s of [1, 2, 3]) {
      const site = await responseSite(url, join(tmp.dir, `site-${s}`), `Study${s}`, `Study${s}.csv`);
      logs.push(site.log);
      nodes.push(await SiteNode.open({ dataDir: site.dir, trainer: site.trainer, approvalPollMs: 100 }));
    }
    const hashes = new Map<string, string>();
    for (const strategy of STRATEGIES) {
      const spec = { ...responseStudySpec(ROUNDS), title: `response, ${strategy.name}`, strategy };
      const started = await createAndStart(url, spec);
      assert.deepEqual(started.manifest.strategy, strategy, 'the manifest the officers approve names the strategy');
      studies.set(strategy.name, { studyId: started.studyId, manifest: started.manifest });
      hashes.set(started.studyId, started.manifestHash);
    }
    const base = responseStudySpec(ROUNDS);
    const packed = await createAndStart(url, { ...base, title: `response, ${PACKED_NAME}`, strategy: { name: 'fedavg' }, encryption: PACKED, training: { ...base.training, maxSamplesPerSite: 340 } });
    assert.deepEqual(packed.manifest.encryption, PACKED, 'the manifest carries lanes');
    studies.set(PACKED_NAME, { studyId: packed.studyId, manifest: packed.manifest });
    hashes.set(packed.studyId, packed.manifestHash);
    for (const n of nodes) n.connect();
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).length === studies.size), 'announcements', 30_000);
    for (const [i, n] of nodes.entries()) for (const [studyId, h] of hashes) SiteNode.approve(n.db, n.audit, studyId, `officer ${i + 1}`, h);
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('completes every study, and all three sites hold the same model digest and state hash for each', async () => {
    for (const [name, { studyId }] of studies) {
      const st = await waitFor(
        () => {
          const s = c.engine.studyStatus(studyId);
          return s.state === 'completed' ? s : null;
        },
        `${name} completion`,
        100_000,
        200,
      );
      assert.equal(st.roundSummaries.length, ROUNDS);
      for (const r of st.roundSummaries) assert.equal(r.completed.length, 3, `${name}: every site contributed`);
    }
    for (const [name, { studyId }] of studies) {
      await waitFor(() => nodes.every((n) => n.latestModel(studyId)?.version === ROUNDS), `${name}: final model at every site`, 20_000);
      for (let v = 1; v <= ROUNDS; v++) {
        const digests = new Set(nodes.map((n) => n.modelHistory(studyId).find((m) => m.version === v)!.digest));
        const states = new Set(nodes.map((n) => n.stateHashAt(studyId, v)));
        assert.equal(digests.size, 1, `${name} v${v}: one model digest across sites`);
        assert.equal(states.size, 1, `${name} v${v}: one state hash across sites`);
        const stateful = strategyFor(studies.get(name)!.manifest.strategy).stateful;
        assert.equal([...states][0] !== 'none', stateful, `${name}: state stored iff the strategy keeps one`);
        // what each site audited when it applied the aggregate: the same model digest and state hash
        const audited = new Set(
          nodes.map((n) => {
            const e = n.audit.entries().find((x) => x.action === 'aggregate.applied' && x.studyId === studyId && x.round === v)!;
            return / model=([0-9a-f]{64}) state=(\S+)/
              .exec(e.detail ?? '')!
              .slice(1)
              .join(' ');
          }),
        );
        assert.deepEqual([...audited], [`${[...digests][0]} ${[...states][0]}`]);
      }
    }
  });

  it('each site applied the strategy to the decrypted mean exactly (recomputed in plaintext), and FedAdam differs from FedAvg', async () => {
    for (const [name, { studyId, manifest }] of studies) {
      const s = strategyFor(manifest.strategy);
      let state = null;
      for (let v = 1; v <= ROUNDS; v++) {
        const mean = plainMean(
          manifest,
          logs.map((l) => l.get(`${studyId}:${v}`)!),
        );
        const out = s.apply(nodes[0].modelAt(studyId, v - 1)!, mean, state);
        assert.equal(bits(out.weights), bits(nodes[0].modelAt(studyId, v)!), `${name} v${v}: the site's model is strategy.apply(previous, mean, state)`);
        assert.equal(stateHash(out.state), nodes[0].stateHashAt(studyId, v));
        state = out.state;
      }
    }
    const final = (name: string) => nodes[0].modelHistory(studies.get(name)!.studyId).find((m) => m.version === ROUNDS)!.digest;
    assert.notEqual(final('fedadam'), final('fedavg'), 'FedAdam moved the model differently from FedAvg');
  });

  it('two values per slot: each upload is ciphertextCount TWH2 ciphertexts of 60-bit words, and the officer is told so', async () => {
    const { studyId, manifest } = studies.get(PACKED_NAME)!;
    const count = ciphertextCount(PACKED, manifest.updateLength);
    assert.equal(count, Math.ceil(manifest.updateLength / 2 / 4096));
    for (const n of nodes) {
      const enc = n.audit.entries().filter((e) => e.action === 'update.encrypted' && e.studyId === studyId);
      assert.equal(enc.length, ROUNDS);
      for (const e of enc) assert.match(e.detail ?? '', new RegExp(` ${count} ciphertexts ${count * ciphertextWireBytes(PACKED, 'upload')} bytes`));
    }
    const view = await manifestView(manifest, 'hash');
    assert.deepEqual(view.encryption, { scheme: 'bfv-sym-seeded', polyModulusDegree: 4096, valuesPerSlot: 2, ciphertexts: count, approxBytes: count * 30950 });
    assert.match(formatManifestView(view), /N=4096, 2 values per slot/);
  });
});
