import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROTOCOL_VERSION, manifestHash, type StudyManifest } from '@twinfed/protocols';
import { generateIdentity, initSodium, toB64 } from '@twinfed/shared/crypto/index';
import { buildCoordinator, type Coordinator } from './server.js';

const TOKEN = 'rest-test-admin-token-123';
const spec = {
  title: 'rest',
  task: 'segmentation',
  model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 1 },
  training: { epochsPerRound: 1, batchSize: 4, learningRate: 0.01, clipBound: 1, seed: 1 },
  data: { modality: 'PET', labels: ['background', 'tumour'] },
  rounds: 2,
  minSites: 3,
  roundDeadlineS: 30,
};

/** The lead REST API, exercised with fastify's inject (no port opened). */
describe('coordinator REST API', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twinfed-rest-'));
  let c: Coordinator;
  const auth = { authorization: `Bearer ${TOKEN}` };
  const post = (url: string, payload?: unknown) => c.app.inject({ method: 'POST', url, headers: auth, ...(payload !== undefined ? { payload: payload as object } : {}) });
  const get = (url: string) => c.app.inject({ method: 'GET', url, headers: auth });
  const enrolSite = async (name: string): Promise<string> => {
    const { token } = (await post('/api/enrolment-tokens', { siteName: name })).json();
    const id = generateIdentity();
    const r = await c.app.inject({
      method: 'POST',
      url: '/api/enrol',
      payload: { token, protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) },
    });
    assert.equal(r.statusCode, 201, r.body);
    return r.json().siteId;
  };

  before(async () => {
    await initSodium();
    c = await buildCoordinator({ dataDir: dir, port: 0, adminToken: TOKEN, logLevel: 'silent', preAuthRateLimit: { burst: 30, perS: 0.001 } });
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

  it('refuses minSites below 3 with TWF_E_TOO_FEW_CONTRIBUTORS naming minSites; the same spec with 3 is accepted', async () => {
    for (const minSites of [1, 2]) {
      const r = await post('/api/studies', { ...spec, minSites });
      assert.equal(r.statusCode, 422);
      assert.equal(r.json().code, 'TWF_E_TOO_FEW_CONTRIBUTORS');
      assert.match(r.json().detail, /minSites/);
    }
    const ok = await post('/api/studies', spec);
    assert.equal(ok.statusCode, 201);
  });

  it('creates a draft; start writes the roster (keys, dealer order) into the manifest officers approve', async () => {
    const r = await post('/api/studies', spec);
    const { studyId, draft } = r.json();
    assert.equal(draft.encryption.scheme, 'bfv-sym-seeded');
    // down0 188 + bottleneck 880 + up0 (132 + 440) + head 10, counted by hand from unetParamSpecs' layout.
    assert.equal(draft.updateLength, 1650, 'the update length is fixed by the model config');
    assert.equal(draft.participants, undefined, 'a draft has no roster');
    const few = await post(`/api/studies/${studyId}/start`, {});
    assert.equal(few.statusCode, 422, 'no enrolled sites yet');
    assert.equal(few.json().code, 'TWF_E_TOO_FEW_CONTRIBUTORS');
    const ids = [await enrolSite('H1'), await enrolSite('H2'), await enrolSite('H3')];
    const started = await post(`/api/studies/${studyId}/start`, {});
    assert.equal(started.statusCode, 200, started.body);
    assert.equal(started.json().state, 'running');
    const { manifest, manifestHash: hash } = (await get(`/api/studies/${studyId}/manifest`)).json() as { manifest: StudyManifest; manifestHash: string };
    assert.deepEqual(
      manifest.participants.map((p) => p.siteId),
      ids,
    );
    assert.deepEqual(manifest.keyDealers, ids);
    assert.equal(manifest.manifestVersion, 1);
    assert.equal(manifestHash(manifest), hash);
    const again = await post(`/api/studies/${studyId}/start`, {});
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().code, 'TWF_E_STUDY_STATE');
    // Adding a site is a new manifest version: another hash, so every officer approves again.
    const d = await enrolSite('H4');
    const changed = await post(`/api/studies/${studyId}/roster`, { add: [d] });
    assert.equal(changed.statusCode, 200, changed.body);
    assert.equal(changed.json().manifestVersion, 2);
    assert.notEqual(changed.json().manifestHash, hash);
    assert.equal((await post(`/api/studies/${studyId}/stop`)).json().state, 'stopped');
    const audit = (await get('/api/audit?limit=100000')).json() as { action: string; studyId: string | null }[];
    assert.deepEqual(
      audit.filter((e) => e.studyId === studyId).map((e) => e.action),
      ['study.created', 'study.started', 'study.roster_changed', 'study.stopped'],
    );
  });

  it('refuses a roster that would weaken the study: unknown site, minSites above the roster or below the threshold', async () => {
    const ids = (await get('/api/sites')).json().map((s: { siteId: string }) => s.siteId) as string[];
    const draft = async (over: object = {}) => (await post('/api/studies', { ...spec, ...over })).json().studyId as string;
    const unknown = await post(`/api/studies/${await draft()}/start`, { sites: [...ids.slice(0, 2), 'site-nobody'] });
    assert.equal(unknown.json().code, 'TWF_E_UNKNOWN_SITE', unknown.body);
    const tooMany = await post(`/api/studies/${await draft({ minSites: 4 })}/start`, { sites: ids.slice(0, 3) });
    assert.equal(tooMany.json().code, 'TWF_E_TOO_FEW_CONTRIBUTORS');
    const ids6 = [...ids, await enrolSite('H5'), await enrolSite('H6')];
    const belowT = await post(`/api/studies/${await draft({ minSites: 3 })}/start`, { sites: ids6.slice(0, 6) });
    assert.equal(belowT.json().code, 'TWF_E_TOO_FEW_CONTRIBUTORS');
    assert.match(belowT.json().detail, /threshold t = 4/);
    const dealer = await post(`/api/studies/${await draft()}/start`, { sites: ids.slice(0, 3), keyDealers: [ids[5] ?? 'site-x'] });
    assert.equal(dealer.statusCode, 400);
  });

  it('says which field of a bad study spec is wrong', async () => {
    const r = await post('/api/studies', { ...spec, rounds: 0 });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().code, 'TWF_E_BAD_REQUEST');
    assert.match(r.json().detail, /rounds/);
  });

  it('issues one-time tokens: the second use is refused, and the refusal is audited', async () => {
    const { token } = (await post('/api/enrolment-tokens', { siteName: 'H' })).json();
    const id = generateIdentity();
    const body = { token, protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) };
    assert.equal((await c.app.inject({ method: 'POST', url: '/api/enrol', payload: body })).statusCode, 201);
    const twice = await c.app.inject({ method: 'POST', url: '/api/enrol', payload: body });
    assert.equal(twice.statusCode, 401);
    assert.equal(twice.json().code, 'TWF_E_ENROLMENT_TOKEN');
    const audit = (await get('/api/audit?limit=100000')).json() as { action: string; detail: string }[];
    assert.ok(audit.some((e) => e.action === 'enrolment.refused' && /already used/.test(e.detail)));
    const sites = (await get('/api/sites')).json() as { siteName: string; connected: boolean; fingerprint: string }[];
    assert.ok(sites.some((s) => s.siteName === 'H' && s.connected === false));
    assert.match(sites[0].fingerprint, /^[0-9a-f]{16}:[0-9a-f]{16}$/);
  });

  it('keeps client errors 4xx with a catalogue code, and never echoes internal messages', async () => {
    const badJson = await c.app.inject({ method: 'POST', url: '/api/studies', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"title": ' });
    assert.equal(badJson.statusCode, 400);
    assert.equal(badJson.json().code, 'TWF_E_BAD_REQUEST');
    const big = await c.app.inject({ method: 'POST', url: '/api/studies', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ title: 'x'.repeat(2 << 20) }) });
    assert.equal(big.statusCode, 413);
    assert.equal(big.json().code, 'TWF_E_TOO_LARGE');
    const nowhere = await get('/api/nowhere');
    assert.equal(nowhere.statusCode, 404);
    assert.equal(nowhere.json().code, 'TWF_E_NOT_FOUND');
    const badId = await get('/api/studies/..%2F..%2Fetc');
    assert.equal(badId.statusCode, 400);
    assert.equal(badId.json().code, 'TWF_E_BAD_REQUEST');
    // A fault inside a handler: 500 with a log reference, not the internal message.
    const orig = c.engine.listSites.bind(c.engine);
    c.engine.listSites = () => {
      throw new Error('SQLITE_CORRUPT at /var/lib/secret/path');
    };
    const errors: string[] = [];
    const origErr = console.error;
    console.error = (...a: unknown[]) => void errors.push(a.join(' '));
    try {
      const r = await get('/api/sites');
      assert.equal(r.statusCode, 500);
      assert.equal(r.json().code, 'TWF_E_INTERNAL');
      assert.doesNotMatch(r.body, /SQLITE_CORRUPT|secret/);
      const ref = /reference ([0-9a-f]{8})/.exec(r.json().detail)![1];
      assert.ok(
        errors.some((e) => e.includes(ref) && e.includes('SQLITE_CORRUPT')),
        'the log line carries the reference and the cause',
      );
    } finally {
      c.engine.listSites = orig;
      console.error = origErr;
    }
  });

  it('hands out single-use handshake nonces, limited per client address', async () => {
    const r = await c.app.inject({ method: 'POST', url: '/api/handshake', payload: { siteId: 'site-abc' } });
    assert.equal(r.statusCode, 200);
    assert.match(r.json().nonce, /^[A-Za-z0-9_-]{32}$/);
    let limited = 0;
    for (let i = 0; i < 40; i++) if ((await c.app.inject({ method: 'POST', url: '/api/handshake', payload: { siteId: 'site-abc' } })).statusCode === 429) limited++;
    assert.ok(limited > 0, 'the per-address budget runs out');
    const m = await c.app.inject({ method: 'GET', url: '/metrics' });
    assert.match(m.body, /twinfed_requests_rate_limited_total\{route="\/api\/handshake"\} \d+/);
  });

  it('publishes OpenAPI generated from the same schemas, and Prometheus metrics', async () => {
    const doc = (await c.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    assert.equal(doc.openapi, '3.1.0');
    // One variant per task (discriminated by `task`), each with the common study fields.
    const variants = doc.paths['/api/studies'].post.requestBody.content['application/json'].schema.oneOf as { properties: Record<string, { const?: string }> }[];
    assert.deepEqual(variants.map((v) => v.properties.task.const).sort(), ['response', 'segmentation', 'twin-prior']);
    for (const v of variants) assert.ok(v.properties.minSites);
    for (const p of ['/api/studies/{id}/roster', '/api/studies/{id}/rounds/current/abort', '/api/studies/{id}/sites/{siteId}/evict', '/api/sites/{siteId}/revoke', '/api/handshake'])
      assert.ok(doc.paths[p], p);
    const m = await c.app.inject({ method: 'GET', url: '/metrics' });
    assert.match(m.body, /# TYPE twinfed_updates_accepted_total counter/);
    assert.match(m.body, /# TYPE twinfed_connections_refused_total counter/);
  });
});
