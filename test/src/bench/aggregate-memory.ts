/**
 * npm run bench:aggregate — does coordinator memory grow with the number of sites?
 *
 * For each N, a fresh coordinator process runs one secure-aggregation round in
 * which N sites (real socket.io connections, signed handshakes, real SEAL
 * ciphertexts of a masked 29k-parameter update) upload concurrently. The coordinator's resident memory
 * is sampled from its own /metrics during the round. Printed as a table with
 * each row's peak growth as a ratio of the smallest N's, measured in the same run.
 * `--json` prints one JSON line at the end.
 *
 * npm run bench:aggregate -- --sites 100 --params 10000000 [--packed] [--chunk-ciphertexts K] [--plaintext-compare] [--workers W] [--json]
 * (--packed: the study encrypts with PACKED_HE_PARAMS, two values per slot, half the ciphertexts;
 * --chunk-ciphertexts: its ciphertextsPerChunk, K ciphertexts per update.chunk message; without it
 * the coordinator's default: 8 for a model of 64 ciphertexts or more, else 1)
 * runs one round at that scale instead (aggregate-scale.ts: simulated sites reusing a few
 * pre-encrypted ciphertexts), prints a table of memory, throughput, phase times and bytes, and with
 * --json one JSON line: sites, params, rssPeakMiB, rssGrowthMiB, aggregateParamsPerS, roundS,
 * bytesIn, bytesOut (and, with --plaintext-compare, the same round without encryption and
 * encryptedOverPlaintext, the ratio of their first-chunk-to-published times).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { secaggThresholdFor } from '@twinfed/protocols';
import { initSodium } from '@twinfed/shared/crypto/index';
import { RawSite, createAndStart, enrolNewSite, tempDir, tinySpec, ADMIN_TOKEN } from '../harness.js';
import { RawParticipant } from '../raw-protocol.js';
import { scaleRun, type ScaleResult } from './aggregate-scale.js';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../cli/dist/bin.js');
const json = process.argv.includes('--json');
const SIZES = [3, 8, 32];

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  const proc: ChildProcess = spawn(
    process.execPath,
    [BIN, 'coordinator', 'start', '--data-dir', join(tmp.dir, 'c'), '--port', String(port), '--admin-token', ADMIN_TOKEN, '--log-level', 'error', '--tick-ms', '200'],
    { stdio: 'ignore' },
  );
  try {
    for (let i = 0; ; i++) {
      if ((await fetch(new URL('/healthz', url)).catch(() => null))?.ok) break;
      if (i > 100) throw new Error('coordinator did not start');
      await sleep(100);
    }
    // N enrolled sites (real one-time tokens, real signed handshakes), each with its own connection,
    // speaking the whole protocol: the first deals the study key, all run secure aggregation.
    for (let i = 0; i < n; i++) await enrolNewSite(url, join(tmp.dir, `s${i}`), `bench ${i}`);
    const spec = tinySpec({ rounds: 1, minSites: secaggThresholdFor(n), roundDeadlineS: 600 });
    spec.model = { ...spec.model, base: 8, depth: 2, size: 48 }; // the demo U-Net: 29,330 parameters, 8 ciphertexts
    const { manifest, manifestHash } = await createAndStart(url, spec);
    const sites = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const raw = await RawSite.create(url, join(tmp.dir, `s${i}`));
        await raw.connected();
        await raw.hello();
        await raw.next('study.announce', 30_000);
        return new RawParticipant(raw, manifest, manifestHash).init();
      }),
    );
    for (const s of sites) await s.join(100);
    await sites[0].deal(60_000);
    await Promise.all(sites.slice(1).map((s) => s.acceptKey(60_000)));
    await Promise.all(sites.map((s) => s.setup(60_000)));
    const PARAMS = manifest.updateLength;
    const deltas = sites.map((_, i) => Float32Array.from({ length: PARAMS }, (_, k) => Math.sin(i + k) * 0.01));
    const prepared = await Promise.all(sites.map((s, i) => s.prepareUpload(1, deltas[i], 10, 120_000)));
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
    await Promise.all(
      sites.map(async (s, i) => {
        const cts = prepared[i].ciphertexts;
        for (let k = 0; k < cts.length; k++) {
          const a = await s.raw.send('update.chunk', manifest.studyId, 1, cts[k], s.chunkMeta(1, k, cts.length, 10));
          if (!a.ok) throw new Error(`${a.code} ${a.detail}`);
        }
      }),
    );
    await Promise.all(sites.map((s) => s.sign(1, 120_000)));
    await Promise.all(sites.map((s) => s.reveal(1, 120_000)));
    await Promise.all(sites.map((s) => s.raw.next('round.aggregate', 120_000)));
    const roundS = (performance.now() - t0) / 1000;
    sampling = false;
    await sampler;
    for (const s of sites) s.raw.close();
    const mib = (b: number) => b / 2 ** 20;
    return { sites: n, baselineMiB: mib(baseline.rss), peakMiB: mib(peak), growthMiB: mib(peak - baseline.rss), heapGrowthMiB: mib(peakHeap - baseline.heap), roundS };
  } finally {
    proc.kill('SIGKILL');
    tmp.cleanup();
  }
}

function argNum(name: string): number | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : undefined;
}

function printScale(rows: ScaleResult[]): void {
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  console.log(
    `one secure-aggregation round, ${rows[0].sites} simulated sites (real handshakes, signed envelopes, sockets; ${4} distinct pre-encrypted ciphertexts reused) x ${rows[0].params.toLocaleString('en')} parameters (${rows[0].chunks} chunks per site of ${rows[0].ciphertextsPerChunk} ciphertext${rows[0].ciphertextsPerChunk > 1 ? 's' : ''}, ${rows[0].lanes} value${rows[0].lanes > 1 ? 's' : ''} per slot)`,
  );
  const cols: [string, (r: ScaleResult) => string][] = [
    ['mode', (r) => r.mode],
    ['RSS base MiB', (r) => f(r.rssBaselineMiB)],
    ['RSS peak MiB', (r) => f(r.rssPeakMiB)],
    ['RSS growth MiB', (r) => f(r.rssGrowthMiB)],
    ['params/s', (r) => `${f(r.aggregateParamsPerS / 1e6, 2)}M`],
    ['1st chunk→published s', (r) => f(r.firstChunkToPublishS)],
    ['upload s', (r) => f(r.uploadS)],
    ['sums written s', (r) => f(r.sumsS)],
    ['consistency+unmask s', (r) => f(r.unmaskS)],
    ['round s', (r) => f(r.roundS)],
    ['delivery s', (r) => f(r.deliveryS)],
    ['bytes in', (r) => r.bytesIn.toLocaleString('en')],
    ['bytes out', (r) => r.bytesOut.toLocaleString('en')],
    ['db peak MiB', (r) => f(r.dbPeakMiB)],
    ['writes/commit', (r) => f(r.writesPerCommit)],
    ['coord CPU ms/chunk', (r) => f(r.coordinatorCpuMsPerChunk, 3)],
    ['bench CPU ms/chunk', (r) => f(r.benchCpuMsPerChunk, 3)],
    ['load', (r) => f(r.loadAvg)],
  ];
  const w = cols.map(([h, g]) => Math.max(h.length, ...rows.map((r) => g(r).length)));
  console.log(cols.map(([h], i) => h.padStart(w[i])).join('  '));
  for (const r of rows) console.log(cols.map(([, g], i) => g(r).padStart(w[i])).join('  '));
  for (const r of rows) console.log(`${r.mode}: aggregate ${r.verified}; delivered to ${r.delivered}/${r.sites} sites; set-up ${f(r.setupS)} s (not timed)`);
  for (const r of rows)
    console.log(
      `${r.mode}: coordinator CPU ms per chunk by thread: ${Object.entries(r.threadCpuMsPerChunk)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
}

await initSodium();
const scaleSites = argNum('--sites');
if (scaleSites !== undefined) {
  const params = argNum('--params') ?? 1_000_000;
  const workers = argNum('--workers');
  const packed = process.argv.includes('--packed');
  const perChunk = argNum('--chunk-ciphertexts');
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const rows: ScaleResult[] = [await scaleRun({ sites: scaleSites, params, mode: 'encrypted', workers, packed, perChunk, log })];
  if (process.argv.includes('--plaintext-compare')) rows.push(await scaleRun({ sites: scaleSites, params, mode: 'plaintext', workers, packed, perChunk, log }));
  printScale(rows);
  const [e, p] = rows;
  const ratio = p ? e.firstChunkToPublishS / p.firstChunkToPublishS : undefined;
  if (ratio !== undefined) console.log(`encrypted / plaintext (first chunk to published): ${ratio.toFixed(2)}x`);
  if (json)
    console.log(
      JSON.stringify({
        sites: e.sites,
        params: e.params,
        rssPeakMiB: +e.rssPeakMiB.toFixed(1),
        rssGrowthMiB: +e.rssGrowthMiB.toFixed(1),
        aggregateParamsPerS: Math.round(e.aggregateParamsPerS),
        roundS: +e.roundS.toFixed(2),
        firstChunkToPublishS: +e.firstChunkToPublishS.toFixed(2),
        bytesIn: e.bytesIn,
        bytesOut: e.bytesOut,
        workers: e.workers,
        lanes: e.lanes,
        ciphertextsPerChunk: e.ciphertextsPerChunk,
        chunksPerSite: e.chunks,
        distinctCiphertexts: 4,
        ...(p
          ? {
              plaintext: {
                rssPeakMiB: +p.rssPeakMiB.toFixed(1),
                aggregateParamsPerS: Math.round(p.aggregateParamsPerS),
                roundS: +p.roundS.toFixed(2),
                firstChunkToPublishS: +p.firstChunkToPublishS.toFixed(2),
                bytesIn: p.bytesIn,
                bytesOut: p.bytesOut,
              },
              encryptedOverPlaintext: +ratio!.toFixed(3),
            }
          : {}),
      }),
    );
  process.exit(0);
}
const rows = [];
for (const n of SIZES) {
  process.stderr.write(`round with ${n} sites...\n`);
  rows.push(await runOnce(n));
}
const ref = Math.max(rows[0].growthMiB, 1);
console.log('coordinator resident memory during one secure-aggregation round (29,330 parameters per update, 8 ciphertexts each, concurrent uploads; round s = first chunk to aggregate)');
console.log('sites  RSS before MiB  RSS peak MiB  RSS growth MiB  growth / growth(3 sites)  JS heap growth MiB  round s');
for (const r of rows)
  console.log(
    `${String(r.sites).padStart(5)}  ${r.baselineMiB.toFixed(1).padStart(14)}  ${r.peakMiB.toFixed(1).padStart(12)}  ${r.growthMiB.toFixed(1).padStart(14)}  ${(r.growthMiB / ref).toFixed(2).padStart(24)}  ${r.heapGrowthMiB.toFixed(1).padStart(18)}  ${r.roundS.toFixed(1).padStart(7)}`,
  );
if (json) console.log(JSON.stringify({ rows }));
process.exit(0);
