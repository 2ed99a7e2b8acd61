import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Coordinator } from '@twinfed/coordinator';
import { SiteNode, manifestView } from '@twinfed/site-node';
import { chunkCount } from '@twinfed/protocols';
import { DEFAULT_HE_PARAMS, ciphertextCount } from '@twinfed/shared/he/index';
import { initSodium } from '@twinfed/shared/crypto/index';
import { aggregateError, createAndStart, realSite, startCoordinator, tempDir, tinySpec, waitFor, type DeltaLog } from './harness.js';
import { scaleRun } from './bench/aggregate-scale.js';

/** A U-Net of 14,354 parameters: 4 ciphertexts at N = 4096, so chunks of 3 and 1 with ciphertextsPerChunk 3. */
const MODEL = { arch: 'unet2d' as const, inChannels: 1, nClasses: 2, base: 12, depth: 1, size: 16, initSeed: 3 };
const PER_CHUNK = 3;

/**
 * ciphertextsPerChunk > 1 (protocols/src/manifest.ts chunkCiphertextRange): three real site nodes
 * group their ciphertexts into update.chunk messages of up to 3, the coordinator sums them on its
 * aggregation workers by ciphertext index, and the decrypted aggregate is the plaintext weighted
 * average, as with one ciphertext per message.
 */
describe('update chunks of several ciphertexts (ciphertextsPerChunk)', () => {
  const tmp = tempDir('chunk-cts');
  let c: Coordinator;
  let studyId: string;
  const nodes: SiteNode[] = [];
  const deltas: DeltaLog[] = [];
  const SITES = [
    { name: 'A', patients: ['STS_001', 'STS_002'], val: ['STS_002'] },
    { name: 'B', patients: ['STS_011', 'STS_012'], val: ['STS_012'] },
    { name: 'C', patients: ['STS_021', 'STS_022'], val: ['STS_022'] },
  ];

  before(async () => {
    await initSodium();
    let url: string;
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    for (let i = 0; i < SITES.length; i++) {
      const r = await realSite(url, join(tmp.dir, `site-${i}`), `Hospital ${SITES[i].name}`, SITES[i].patients, SITES[i].val);
      nodes.push(r.node);
      deltas.push(r.deltas);
    }
    let manifestHash: string;
    ({ studyId, manifestHash } = await createAndStart(url, { ...tinySpec({ rounds: 1, minSites: 3, roundDeadlineS: 120 }), model: MODEL, ciphertextsPerChunk: PER_CHUNK }));
    for (const n of nodes) n.connect();
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).length === 1), 'announcements', 20_000);
    nodes.forEach((n, i) => SiteNode.approve(n.db, n.audit, studyId, `officer ${SITES[i].name}`, manifestHash));
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('the officer sees how many messages the update takes', async () => {
    const st = SiteNode.listStudies(nodes[0].db)[0];
    const m = st.manifest!;
    assert.equal(m.ciphertextsPerChunk, PER_CHUNK);
    const leave = (await manifestView(m, st.manifestHash, nodes[0].siteId)).leaves.find((l) => l.messageType === 'update.chunk')!;
    assert.match(leave.howOften, /in 2 messages of up to 3 ciphertexts/);
  });

  it('each site sends 2 chunks for 4 ciphertexts, and the decrypted aggregate is the plaintext weighted average', async () => {
    await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion', 240_000, 250);
    const total = ciphertextCount(DEFAULT_HE_PARAMS, 14_354);
    assert.equal(total, 4);
    const chunks = c.engine.audit.entries().filter((e) => e.studyId === studyId && e.msgType === 'update.chunk');
    assert.equal(chunks.length, 3 * chunkCount(total, PER_CHUNK), 'one update.chunk per 3 ciphertexts per site');
    for (const e of chunks) assert.match(e.detail ?? '', /^chunk [12]\/2 /);
    await waitFor(() => nodes.every((n) => (n.latestModel(studyId)?.version ?? 0) === 1), 'models at version 1', 30_000);
    const maxErr = aggregateError(
      nodes[0].modelAt(studyId, 0)!,
      nodes[0].modelAt(studyId, 1)!,
      [0, 1, 2].map((i) => deltas[i].get(1)!),
    );
    assert.ok(maxErr < 3 * 2 ** -21 + 1e-6, `max |decrypted - plaintext average| = ${maxErr}`);
  });

  it('a real coordinator process sums 5 sites x 7 ciphertexts in chunks of 3 exactly (the scale bench at small size)', async () => {
    const r = await scaleRun({ sites: 5, params: 25_000, mode: 'encrypted', perChunk: PER_CHUNK, log: () => undefined });
    assert.equal(r.ciphertextsPerChunk, PER_CHUNK);
    assert.equal(r.chunks, chunkCount(ciphertextCount(DEFAULT_HE_PARAMS, r.params), PER_CHUNK));
    assert.match(r.verified, /exact/);
    assert.equal(r.delivered, 5);
  });
});
