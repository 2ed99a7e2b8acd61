/**
 * npm run bench:aggregate — does coordinator memory grow with the number of sites?
 *
 * For each N, a fresh coordinator process runs one round in which N sites
 * (real socket.io connections, real signatures, real SEAL ciphertexts of a
 * 29k-parameter update) upload concurrently. The coordinator's resident memory
 * is sampled from its own /metrics during the round. Printed as a table with
 * each row's peak growth as a ratio of the smallest N's, measured in the same run.
 * `--json` prints one JSON line at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import { PROTOCOL_VERSION, type Ack, type StudyManifest } from '@twinfed/protocols';
import { fromB64, generateIdentity, initSodium, parseEnvelope, sealEnvelope, sealTo, toB64, type Identity } from '@twinfed/shared/crypto/index';
import { createHeContext, encryptWeightedUpdate, generateSecretKey, heParamsDigest, type HeParams } from '@twinfed/shared/he/index';
import { tempDir, tinySpec, ADMIN_TOKEN } from '../harness.js';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../cli/dist/bin.js');
const json = process.argv.includes('--json');
const SIZES = [2, 8, 32];
const PARAMS = 29_000;

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function api<T>(url: string, method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(new URL(path, url), { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return (await r.json()) as T;
}

async function memory(url: string): Promise<{ rss: number; heap: number }> {
  const t = await (await fetch(new URL('/metrics', url))).text();
  const rss = /twinfed_coordinator_process_resident_memory_bytes (\d+)/.exec(t);
  const heap = /twinfed_coordinator_nodejs_heap_size_used_bytes (\d+)/.exec(t);
  return { rss: rss ? Number(rss[1]) : NaN, heap: heap ? Number(heap[1]) : NaN };
}

async function runOnce(n: number): Promise<{ sites: number; baselineMiB: number; peakMiB: number; growthMiB: number; heapGrowthMiB: number; roundS: number }> {
  const tmp = tempDir('bench-agg');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc: ChildProcess = spawn(process.execPath, [BIN, 'coordinator', 'start', '--data-dir', join(tmp.dir, 'c'), '--port', String(port), '--admin-token', ADMIN_TOKEN, '--log-level', 'error', '--tick-ms', '200'], { stdio: 'ignore' });
  try {
    for (let i = 0; ; i++) {
      if ((await fetch(new URL('/healthz', url)).catch(() => null))?.ok) break;
      if (i > 100) throw new Error('coordinator did not start');
      await sleep(100);
    }
    // N enrolled identities, each with its own connection.
    const sites: { id: string; key: Identity; seq: number; sock: ReturnType<typeof io>; inbox: ReturnType<typeof parseEnvelope>[] }[] = [];
    for (let i = 0; i < n; i++) {
      const key = generateIdentity();
      const { token } = await api<{ token: string }>(url, 'POST', '/api/enrolment-tokens', { siteName: `bench ${i}` });
      const r = await api<{ siteId: string }>(url, 'POST', '/api/enrol', { token, protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: toB64(key.ed25519PublicKey), x25519PublicKey: toB64(key.x25519PublicKey) });
      const sock = io(url, { auth: { siteId: r.siteId, protocolVersion: PROTOCOL_VERSION }, transports: ['websocket'], reconnection: false });
      const s = { id: r.siteId, key, seq: 0, sock, inbox: [] as ReturnType<typeof parseEnvelope>[] };
      sock.on('envelope', (raw: unknown) => s.inbox.push(parseEnvelope(raw)));
      sites.push(s);
    }
    const send = (s: (typeof sites)[number], type: Parameters<typeof sealEnvelope>[1]['type'], studyId: string | null, round: number | null, body: unknown, meta?: Record<string, string | number | boolean>) =>
      new Promise<Ack>((res) => s.sock.emit('envelope', sealEnvelope({ id: s.id, ed25519SecretKey: s.key.ed25519SecretKey, nextSeq: () => ++s.seq }, { type, studyId, round, body, ...(meta ? { meta } : {}) }), (a: Ack) => res(a)));
    const waitMsg = async (s: (typeof sites)[number], type: string) => {
      for (let i = 0; i < 600; i++) {
        const k = s.inbox.findIndex((e) => e.header.type === type);
        if (k >= 0) return s.inbox.splice(k, 1)[0];
        await sleep(50);
      }
      throw new Error(`${s.id}: no ${type}`);
    };
    const spec = tinySpec({ rounds: 1, minSites: n, roundDeadlineS: 600 });
    const created = await api<{ studyId: string; manifest: StudyManifest; manifestHash: string }>(url, 'POST', '/api/studies', spec);
    await api(url, 'POST', `/api/studies/${created.studyId}/start`);
    for (const s of sites) await send(s, 'hello', null, null, { siteName: s.id, backend: 'bench', approved: [] });
    for (const s of sites) await send(s, 'study.join', created.studyId, null, { manifestHash: created.manifestHash, trainSlices: 100, valPatients: 2 });
    const params = created.manifest.encryption as HeParams;
    const ctx = await createHeContext(params);
    const sk = generateSecretKey(ctx);
    // The first site deals the key to every recipient the coordinator asks for.
    const dealt = new Set<string>();
    while (dealt.size < n) {
      const req = await waitMsg(sites[0], 'keys.request');
      const recips = (JSON.parse(Buffer.from(req.body).toString()) as { recipients: { siteId: string; x25519PublicKey: string }[] }).recipients;
      await send(sites[0], 'keys.sealed', created.studyId, null, { heParamsDigest: heParamsDigest(params), recipients: recips.map((r) => ({ siteId: r.siteId, sealedKey: toB64(sealTo(fromB64(r.x25519PublicKey), sk)) })) });
      recips.forEach((r) => dealt.add(r.siteId));
    }
    await Promise.all(sites.map((s) => waitMsg(s, 'round.start')));
    const updates = sites.map((_, i) => encryptWeightedUpdate(ctx, sk, Float32Array.from({ length: PARAMS }, (_, k) => Math.sin(i + k) * 0.01), 10, 1));
    const baseline = await memory(url);
    let peak = baseline.rss;
    let peakHeap = baseline.heap;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const m = await memory(url);
        peak = Math.max(peak, m.rss);
        peakHeap = Math.max(peakHeap, m.heap);
        await sleep(100);
      }
    })();
    const t0 = performance.now();
    await Promise.all(sites.map(async (s, i) => {
      const cts = updates[i].ciphertexts;
      for (let k = 0; k < cts.length; k++) {
        const a = await send(s, 'update.chunk', created.studyId, 1, cts[k], { index: k, count: cts.length, nSamples: 10, length: PARAMS, heParamsDigest: heParamsDigest(params) });
        if (!a.ok) throw new Error(`${a.code} ${a.detail}`);
      }
    }));
    await Promise.all(sites.map((s) => waitMsg(s, 'round.aggregate')));
    const roundS = (performance.now() - t0) / 1000;
    sampling = false;
    await sampler;
    for (const s of sites) s.sock.disconnect();
    const mib = (b: number) => b / 2 ** 20;
    return { sites: n, baselineMiB: mib(baseline.rss), peakMiB: mib(peak), growthMiB: mib(peak - baseline.rss), heapGrowthMiB: mib(peakHeap - baseline.heap), roundS };
  } finally {
    proc.kill('SIGKILL');
    tmp.cleanup();
  }
}

await initSodium();
const rows = [];
for (const n of SIZES) {
  process.stderr.write(`round with ${n} sites...\n`);
  rows.push(await runOnce(n));
}
const ref = Math.max(rows[0].growthMiB, 1);
console.log(`coordinator resident memory during one round (${PARAMS} parameters per update, 8 ciphertexts each, concurrent uploads)`);
console.log('sites  RSS before MiB  RSS peak MiB  RSS growth MiB  growth / growth(2 sites)  JS heap growth MiB  round s');
for (const r of rows) console.log(`${String(r.sites).padStart(5)}  ${r.baselineMiB.toFixed(1).padStart(14)}  ${r.peakMiB.toFixed(1).padStart(12)}  ${r.growthMiB.toFixed(1).padStart(14)}  ${(r.growthMiB / ref).toFixed(2).padStart(24)}  ${r.heapGrowthMiB.toFixed(1).padStart(18)}  ${r.roundS.toFixed(1).padStart(7)}`);
if (json) console.log(JSON.stringify({ rows }));
process.exit(0);
