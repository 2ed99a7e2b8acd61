import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCoordinator, type Coordinator } from './server.js';

const TOKEN = 'rest-test-admin-token-123';
const spec = {
  title: 'rest', task: 'segmentation',
  model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 1 },
  training: { epochsPerRound: 1, batchSize: 4, learningRate: 0.01, clipBound: 1, seed: 1 },
  data: { modality: 'PET', labels: ['background', 'tumour'] },
  rounds: 2, minSites: 1, roundDeadlineS: 30,
};

/** The lead REST API, exercised with fastify's inject (no port opened). */
describe('coordinator REST API', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twinfed-rest-'));
  let c: Coordinator;
  const auth = { authorization: `Bearer ${TOKEN}` };
  before(async () => {
    c = await buildCoordinator({ dataDir: dir, port: 0, adminToken: TOKEN, logLevel: 'silent' });
  });
  after(async () => {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses lead calls without the bearer token', async () => {
    const r = await c.app.inject({ method: 'GET', url: '/api/studies' });
    assert.equal(r.statusCode, 401);
    assert.equal(r.json().code, 'TWF_E_NOT_AUTHORISED');
  });

  it('creates, starts and stops a study; the manifest carries the encryption parameters', async () => {
    const r = await c.app.inject({ method: 'POST', url: '/api/studies', headers: auth, payload: spec });
    assert.equal(r.statusCode, 201);
    const { studyId, manifest, manifestHash } = r.json();
    assert.equal(manifest.encryption.scheme, 'bfv-sym-seeded');
    assert.match(manifestHash, /^[0-9a-f]{64}$/);
    assert.equal((await c.app.inject({ method: 'POST', url: `/api/studies/${studyId}/start`, headers: auth })).json().state, 'running');
    const again = await c.app.inject({ method: 'POST', url: `/api/studies/${studyId}/start`, headers: auth });
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().code, 'TWF_E_STUDY_STATE');
    assert.equal((await c.app.inject({ method: 'POST', url: `/api/studies/${studyId}/stop`, headers: auth })).json().state, 'stopped');
    const audit = (await c.app.inject({ method: 'GET', url: '/api/audit', headers: auth })).json() as { action: string }[];
    assert.deepEqual(audit.map((e) => e.action), ['study.created', 'study.started', 'study.stopped']);
  });

  it('says which field of a bad study spec is wrong', async () => {
    const r = await c.app.inject({ method: 'POST', url: '/api/studies', headers: auth, payload: { ...spec, rounds: 0 } });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().code, 'TWF_E_BAD_REQUEST');
    assert.match(r.json().detail, /rounds/);
  });

  it('issues one-time tokens: the second use is refused', async () => {
    const { token } = (await c.app.inject({ method: 'POST', url: '/api/enrolment-tokens', headers: auth, payload: { siteName: 'H' } })).json();
    const body = { token, protocolVersion: '1.0', ed25519PublicKey: Buffer.alloc(32, 1).toString('base64'), x25519PublicKey: Buffer.alloc(32, 2).toString('base64') };
    assert.equal((await c.app.inject({ method: 'POST', url: '/api/enrol', payload: body })).statusCode, 201);
    const twice = await c.app.inject({ method: 'POST', url: '/api/enrol', payload: body });
    assert.equal(twice.statusCode, 401);
    assert.equal(twice.json().code, 'TWF_E_ENROLMENT_TOKEN');
    const sites = (await c.app.inject({ method: 'GET', url: '/api/sites', headers: auth })).json() as { siteName: string; connected: boolean }[];
    assert.deepEqual(sites.map((s) => [s.siteName, s.connected]), [['H', false]]);
  });

  it('publishes OpenAPI generated from the same schemas, and Prometheus metrics', async () => {
    const doc = (await c.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    assert.equal(doc.openapi, '3.1.0');
    // One variant per task (discriminated by `task`), each with the common study fields.
    const variants = doc.paths['/api/studies'].post.requestBody.content['application/json'].schema.oneOf as { properties: Record<string, { const?: string }> }[];
    assert.deepEqual(variants.map((v) => v.properties.task.const).sort(), ['response', 'segmentation']);
    for (const v of variants) assert.ok(v.properties.minSites);
    const m = await c.app.inject({ method: 'GET', url: '/metrics' });
    assert.match(m.body, /# TYPE twinfed_updates_accepted_total counter/);
  });
});
