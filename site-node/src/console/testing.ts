import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { StudyManifestSchema, manifestHash, type StudyManifest } from '@twinfed/protocols';
import { generateIdentity, initSodium, saveIdentity, toB64 } from '@twinfed/shared/crypto/index';
import { SITE_FILES, SiteConfigSchema, saveSiteConfig } from '../config.js';
import { openSiteStore } from '../store.js';
import { studies } from '../db/schema.js';

/** Test support (not exported from index.ts). */
/** A real site folder (identity, site.json, site.db) without a coordinator, with one pending manifest. */
export async function seedSite(dir: string, opts: { title?: string; otherSiteName?: string } = {}): Promise<{ manifest: StudyManifest; hash: string }> {
  await initSodium();
  mkdirSync(dir, { recursive: true });
  const id = generateIdentity();
  saveIdentity(join(dir, SITE_FILES.identity), id);
  const coord = generateIdentity();
  saveSiteConfig(
    dir,
    SiteConfigSchema.parse({
      coordinatorUrl: 'http://127.0.0.1:9',
      siteId: 'site-a',
      siteName: 'Hospital A',
      coordinatorId: 'coord-1',
      coordinatorPublicKey: toB64(coord.ed25519PublicKey),
    }),
  );
  const key = (n: number) => Buffer.alloc(32, n).toString('base64');
  const manifest = StudyManifestSchema.parse({
    title: opts.title ?? 'Sarcoma PET segmentation',
    task: 'segmentation',
    model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 8, depth: 2, size: 48, initSeed: 1 },
    training: { epochsPerRound: 1, batchSize: 8, learningRate: 0.001, clipBound: 1, seed: 1 },
    data: { modality: 'PET', labels: ['bg', 'tumour'] },
    rounds: 3,
    minSites: 3,
    roundDeadlineS: 60,
    encryption: { scheme: 'bfv-sym-seeded', polyModulusDegree: 4096, coeffModulusBits: [60], plainModulusBits: 42, precisionBits: 20 },
    studyId: 's1',
    coordinatorId: 'coord-1',
    createdAt: '2026-01-01T00:00:00.000Z',
    updateLength: 29330,
    secureAggregation: 'double-mask-v1',
    manifestVersion: 1,
    participants: [
      { siteId: 'site-a', siteName: 'Hospital A', ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) },
      { siteId: 'site-b', siteName: opts.otherSiteName ?? 'Hospital B', ed25519PublicKey: key(2), x25519PublicKey: key(12) },
      { siteId: 'site-c', siteName: 'Hospital C', ed25519PublicKey: key(3), x25519PublicKey: key(13) },
    ],
    keyDealers: ['site-b', 'site-a', 'site-c'],
    dp: { level: 'patient', epsilon: 8, delta: 1e-5, clipNorm: 1, samplingRate: 0.1, noiseMultiplier: 1.1 },
  });
  const hash = manifestHash(manifest);
  const store = await openSiteStore(dir);
  store.db
    .insert(studies)
    .values({ studyId: manifest.studyId, manifestJson: JSON.stringify(manifest), manifestHash: hash, status: 'pending', announcedAtMs: Date.now() })
    .run();
  store.audit.append({ actor: 'coord-1', action: 'study.announced', studyId: manifest.studyId, digest: hash, detail: manifest.title });
  store.close();
  return { manifest, hash };
}
