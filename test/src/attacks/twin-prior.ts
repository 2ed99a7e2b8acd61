import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TwinPriorManifest } from '@twinfed/protocols';
import type { Coordinator } from '@twinfed/coordinator';
import { BUILTIN_MAPPINGS, SiteNode, createTwinPriorTrainer, importPath, openSiteStore, readFederatedPrior, siteBoxStats, type LocalTrainer } from '@twinfed/site-node';
import { mergeStats, modelBox, twinPriorStudySpec, type ModelName } from '@twinfed/shared/twin/index';
import { connectAndApprove, createAndStart, enrolNewSite, startCoordinator, waitFor } from '../harness.js';
import { contained, failed, type Attack, type AttackOutcome } from './types.js';

/**
 * Attacks on the population-prior task (twin-prior): a site that forges its sufficient statistics.
 * Real coordinator, real site nodes (Laleh Study1-3), real SEAL and secure aggregation; sites 1-2
 * are honest, site 3 runs the honest trainer's data path but uploads a forged vector.
 */

const FIX = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../fixtures/growth-laleh2022');
const MODELS: ModelName[] = ['exponential'];

interface PriorLab {
  c: Coordinator;
  nodes: SiteNode[];
  studyId: string;
  manifest: TwinPriorManifest;
  refusals: { code: string; detail: string }[];
  close(): Promise<void>;
}

/** Sites 1-2 honest, site 3 uploads `forge(manifest)` as its statistics (weight 1); all approved. */
async function openPriorLab(dir: string, forge: (m: TwinPriorManifest) => Float32Array): Promise<PriorLab> {
  const { c, url } = await startCoordinator(join(dir, 'coordinator'));
  const nodes: SiteNode[] = [];
  const stores: { close(): void }[] = [];
  const refusals: { code: string; detail: string }[] = [];
  const close = async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    for (const s of stores) s.close();
    await c.close().catch(() => undefined);
  };
  try {
    for (const s of [1, 2, 3]) {
      const d = join(dir, `site-${s}`);
      await enrolNewSite(url, d, `Study${s}`);
      const store = await openSiteStore(d);
      stores.push(store);
      await importPath(store.db, store.audit, join(FIX, `Study${s}.csv`), { mapping: BUILTIN_MAPPINGS.laleh, refit: false });
      const honest = createTwinPriorTrainer(store.db);
      const trainer: LocalTrainer =
        s === 3
          ? {
              ...honest,
              async train(m, base) {
                const v = forge(m as TwinPriorManifest);
                return { weights: v.map((x, i) => x + base[i]), nSamples: 1, loss: 0, ms: 0 };
              },
            }
          : honest;
      nodes.push(await SiteNode.open({ dataDir: d, trainer, approvalPollMs: 100, events: s === 3 ? {} : { onRefusedAggregate: (e) => refusals.push(e) } }));
    }
    const st = await createAndStart(url, { ...twinPriorStudySpec(MODELS), roundDeadlineS: 30 });
    await connectAndApprove(nodes, { studyId: st.studyId, manifestHash: st.manifestHash });
    return { c, nodes, studyId: st.studyId, manifest: st.manifest as TwinPriorManifest, refusals, close };
  } catch (e) {
    await close();
    throw e;
  }
}

export const TWIN_PRIOR_ATTACKS: Attack[] = [
  {
    name: 'twin-prior-forged-statistics',
    finding: null,
    expected: 'a site declaring sums no patients can give (Σu beyond n) is refused by every honest site; one declaring nMax patients at the box corner (values beyond ±B) is clipped and bounded',
    async run(ctx): Promise<AttackOutcome> {
      // (a) n = 5 patients but Σu_0 = nMax: every |u| ≤ 1, so |Σu_0| ≤ n for any honest set of patients.
      const a = await openPriorLab(join(ctx.dir, 'a'), (m) => {
        const v = new Float32Array(m.updateLength);
        const B = m.training.clipBound;
        v[0] = (B * 5) / m.model.maxPatientsPerSite;
        v[1] = B;
        return v;
      });
      let codeA: string;
      try {
        await waitFor(() => (a.refusals.length >= 2 ? true : null), 'honest sites refusing the forged aggregate', 120_000, 100);
        if (a.nodes.some((n) => readFederatedPrior(n.db))) return failed('a site stored a prior built from forged statistics');
        if (!a.refusals.every((r) => r.code === 'TWF_E_AGGREGATE_BOUNDS')) return failed(`unexpected refusal codes ${a.refusals.map((r) => r.code).join(',')}`);
        codeA = a.refusals[0].code;
        ctx.log(`(a) ${a.refusals[0].detail}`);
      } finally {
        await a.close();
      }
      // (b) 10·B in every element: quantisation clips to ±B = nMax patients at the upper corner of the box, Σrss and Σdof at their caps.
      const b = await openPriorLab(join(ctx.dir, 'b'), (m) => new Float32Array(m.updateLength).fill(10 * m.training.clipBound));
      try {
        await waitFor(() => (b.nodes.slice(0, 2).every((n) => readFederatedPrior(n.db)) ? true : null), 'the prior at the honest sites', 120_000, 100);
        const rec = readFederatedPrior(b.nodes[0].db)!;
        const honest = b.nodes.slice(0, 2).map((n) => siteBoxStats(n.db, b.manifest).byModel.get('exponential')!);
        const h = honest.reduce((x, y) => mergeStats(x, y));
        const nMax = b.manifest.model.maxPatientsPerSite;
        const got = rec.models.exponential;
        if (got.n !== h.n + nMax) return failed(`prior n = ${got.n}; honest ${h.n} + at most ${nMax} from the forger expected`);
        // The forger's share of every Σz element is at most nMax patients at the box corner: z ≤ upper bound.
        const box = modelBox('exponential');
        const hi = box.centre.map((cc, j) => cc + box.half[j]);
        const meanZ = got.sum.map((s) => s / got.n);
        if (meanZ.some((z, j) => z > hi[j] + 1e-6)) return failed(`prior mean ${meanZ} beyond the box`);
        return contained(
          `(a) refused by both honest sites (${codeA}: Σu beyond n); (b) clipped to ±B: the forger adds ${nMax} patients (maxPatientsPerSite) at the box corner, prior n ${h.n} → ${got.n}, mean z within the box [${meanZ.map((z) => z.toFixed(2)).join(', ')}]`,
          codeA,
        );
      } finally {
        await b.close();
      }
    },
  },
];
