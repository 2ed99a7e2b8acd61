/**
 * One secure-aggregation round at scale against a real coordinator process (npm run bench:aggregate
 * -- --sites N --params P): N simulated sites enrol with one-time tokens, connect with the signed
 * handshake, join, take the study key from the first site's handout, send their signed mask
 * set-ups, upload their update chunk by chunk as signed envelopes over their own socket.io
 * connection, sign the survivor set and reveal their shares; the coordinator publishes the
 * aggregate and every site receives it.
 *
 * What is simulated, to spare the bench machine's CPU: the sites reuse DISTINCT pre-encrypted
 * ciphertexts (encrypted once under the real study key) instead of masking and encrypting a
 * 10M-parameter update each; site s sends ciphertext (s + i) mod DISTINCT as chunk i. So the
 * published aggregate is checked by decrypting it: every slot must be the sum of the plaintexts
 * the sites sent, mod t (the masks are not applied, so nothing to unmask). Everything the
 * coordinator does is real: handshakes, signature checks, validation and addition of every
 * ciphertext, the durable chunk rows, the secure-aggregation phases, publishing to every site.
 *
 * Receiving the aggregate: 100 sites x 160 MB would need 16 GB at once in this one process (real
 * sites are separate machines). Each site's TCP socket is paused once it has revealed, and the
 * sites then read their aggregate a few at a time (DELIVERY_CONCURRENCY): the coordinator sends
 * every byte for real, TCP flow control holds the rest, and this process holds a few copies.
 *
 * Plaintext mode (--plaintext-compare runs it after the encrypted round): the same round against a
 * coordinator started with --bench-plaintext (a bench-only mode, refused without
 * TWINFED_BENCH_PLAINTEXT): chunks are float32 plaintext, summed as such, published as float64.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { createServer, type Socket as NetSocket } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from '@twinfed/shared/db/driver';
import { chunkCiphertextRange, chunkCount, packFrames, secaggThresholdFor, unpackFrames, type Ack, type StudyManifest } from '@twinfed/protocols';
import { initSodium } from '@twinfed/shared/crypto/index';
import { PACKED_HE_PARAMS, ciphertextCount, decryptSlots, encryptSlots, maxSamplesPerSiteFor, packedLength } from '@twinfed/shared/he/index';
import { updateLength } from '@twinfed/shared/model/update-length';
import { RawSite, createAndStart, enrolNewSite, lead, tempDir, tinySpec, ADMIN_TOKEN } from '../harness.js';
import { RawParticipant } from '../raw-protocol.js';

/** The CLI that starts the coordinator; TWINFED_BENCH_COORDINATOR_BIN runs another build's (A/B against a baseline). */
const BIN = process.env.TWINFED_BENCH_COORDINATOR_BIN ?? resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../cli/dist/bin.js');
/** Distinct pre-encrypted ciphertexts the simulated sites reuse. */
const DISTINCT = 4;
const DELIVERY_CONCURRENCY = 6;
const MAX_PAYLOAD_BYTES = 2 ** 31 - 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (b: number) => b / 2 ** 20;

export interface ScaleResult {
  mode: 'encrypted' | 'plaintext';
  sites: number;
  params: number;
  chunks: number;
  /** Ciphertexts per update.chunk message (the study's ciphertextsPerChunk). */
  ciphertextsPerChunk: number;
  /** Values per plaintext slot: 1 (DEFAULT_HE_PARAMS) or 2 (--packed, PACKED_HE_PARAMS). */
  lanes: number;
  workers: number | null;
  rssBaselineMiB: number;
  rssPeakMiB: number;
  rssGrowthMiB: number;
  /** Kernel high-water mark of the coordinator's RSS (VmHWM), whole process life. */
  rssHwmMiB: number;
  /** First chunk sent → round closed (aggregate published). */
  firstChunkToPublishS: number;
  aggregateParamsPerS: number;
  /** round.opened → round closed, coordinator clock. */
  roundS: number;
  uploadS: number;
  /** Last chunk acknowledged → sums written (round.summed). */
  sumsS: number;
  /** Sums written → consistency and unmask phases done, round closed. */
  unmaskS: number;
  /** Round closed → the last site holds the aggregate. */
  deliveryS: number;
  delivered: number;
  bytesIn: number;
  bytesOut: number;
  dbPeakMiB: number;
  /** Per-message writes per commit during the round (group commit). */
  writesPerCommit: number;
  /** CPU time of the coordinator process (all threads) and of this bench process during the upload, per chunk, ms. */
  coordinatorCpuMsPerChunk: number;
  benchCpuMsPerChunk: number;
  /** The coordinator's CPU per chunk during the upload by thread name (main, aggregation workers, libuv, V8), ms. */
  threadCpuMsPerChunk: Record<string, number>;
  /** Load average (1 min) of the machine when the upload ended: other work on it skews the times. */
  loadAvg: number;
  verified: string;
  setupS: number;
}

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

/** The U-Net configuration whose update length is closest to `target` parameters. */
export function modelFor(target: number): { model: { arch: 'unet2d'; inChannels: number; nClasses: number; base: number; depth: number; size: number; initSeed: number }; length: number } {
  let best: { model: ReturnType<typeof modelFor>['model']; length: number } | null = null;
  for (let depth = 1; depth <= 5; depth++)
    for (let base = 2; base <= 64; base++)
      for (let inChannels = 1; inChannels <= 4; inChannels++) {
        const model = { arch: 'unet2d' as const, inChannels, nClasses: 2, base, depth, size: 64, initSeed: 3 };
        const length = updateLength(model);
        if (!best || Math.abs(length - target) < Math.abs(best.length - target)) best = { model, length };
      }
  return best!;
}

function procStatus(pid: number): { rss: number; hwm: number } {
  try {
    const t = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(t)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

/** CPU seconds (user + system) the process has used, all its threads (/proc/PID/stat), or one thread's (/proc/PID/task/TID/stat). */
function cpuSeconds(pid: number, tid?: number): number {
  try {
    const f = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8')
      .split(') ')[1]
      .split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/** CPU seconds per named thread of a process (main thread = the process name; workers, libuv pool, V8 helpers). */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const name = tid === String(pid) ? 'main' : readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      out.set(name, (out.get(name) ?? 0) + cpuSeconds(pid, Number(tid)));
    }
  } catch {
    /* gone */
  }
  return out;
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} ([0-9.e+]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** The TCP socket under a socket.io client (engine.io websocket transport → ws → net.Socket). */
function tcpOf(raw: RawSite): NetSocket | null {
  const engine = (raw.socket.io as unknown as { engine?: { transport?: { ws?: { _socket?: NetSocket } } } }).engine;
  return engine?.transport?.ws?._socket ?? null;
}

async function pool<T>(items: T[], limit: number, fn: (t: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i], i);
      }
    }),
  );
}

/**
 * `packed`: the study uses PACKED_HE_PARAMS (two values per slot, TWH2, half the ciphertexts); the
 * weight cap is then what the lane capacity allows for this many sites (maxSamplesPerSiteFor), and
 * every site claims min(10, that) samples. The plaintext round of a packed comparison sends the
 * same number of chunks, each with as many float32 values as a packed ciphertext carries.
 *
 * `perChunk`: the study's ciphertextsPerChunk (update.chunk messages carry that many ciphertexts);
 * absent, the coordinator's default for the model's size (8 from 64 ciphertexts up).
 *
 * `probe` (attack suite, not the bench): runs for site 0 before its honest upload, with a way to
 * send any body as one of its chunks and the honest body of each chunk; it returns the chunks it
 * delivered itself, the site sends the rest, and the published aggregate must still be exactly
 * the honest sum.
 */
export type ChunkProbe = (p: { send: (body: Uint8Array, index: number) => Promise<Ack>; honest: (index: number) => Uint8Array; chunks: number }) => Promise<{ delivered: number[] }>;

export async function scaleRun(opts: {
  sites: number;
  params: number;
  mode: 'encrypted' | 'plaintext';
  workers?: number;
  packed?: boolean;
  perChunk?: number;
  probe?: ChunkProbe;
  log: (s: string) => void;
}): Promise<ScaleResult> {
  const { sites: n, mode, log } = opts;
  await initSodium();
  const tmp = tempDir(`bench-scale-${mode}`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dataDir = join(tmp.dir, 'c');
  const args = [BIN, 'coordinator', 'start', '--data-dir', dataDir, '--port', String(port), '--admin-token', ADMIN_TOKEN, '--log-level', 'warn'];
  // Every site enrols, asks for a handshake nonce and opens a socket from this one address.
  // TWINFED_BENCH_COORDINATOR_BIN may be an older build without these options (A/B runs of up to 25 sites).
  if (!process.env.TWINFED_BENCH_COORDINATOR_BIN) {
    if (n > 25) args.push('--pre-auth-burst', String(4 * n + 40), '--pre-auth-per-s', '100');
    // The sites read their aggregate a few at a time (below): the others hold it back by TCP flow
    // control, their heartbeat queued behind it, as a slow site's would be.
    args.push('--heartbeat-timeout-s', '900');
  }
  if (opts.workers !== undefined) args.push('--aggregation-workers', String(opts.workers));
  if (mode === 'plaintext') args.push('--bench-plaintext');
  const logFile = join(tmp.dir, 'coordinator.log');
  // TWINFED_BENCH_NODE_ARGS: extra node flags for the coordinator (e.g. --cpu-prof --cpu-prof-dir=DIR).
  const nodeArgs = (process.env.TWINFED_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc: ChildProcess = spawn(process.execPath, [...nodeArgs, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...(mode === 'plaintext' ? { TWINFED_BENCH_PLAINTEXT: 'updates-are-not-encrypted' } : {}) },
  });
  proc.stderr!.pipe(createWriteStream(logFile));
  const raws: RawSite[] = [];
  try {
    for (let i = 0; ; i++) {
      if ((await fetch(new URL('/healthz', url)).catch(() => null))?.ok) break;
      if (proc.exitCode !== null || i > 200) throw new Error(`coordinator did not start: ${existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''}`);
      await sleep(100);
    }
    const tSetup = performance.now();
    for (let i = 0; i < n; i++) await enrolNewSite(url, join(tmp.dir, `s${i}`), `bench ${i}`);
    const { model, length } = modelFor(opts.params);
    const spec = tinySpec({ rounds: 1, minSites: secaggThresholdFor(n), roundDeadlineS: 3600 });
    spec.model = model;
    let nSamples = 10;
    if (opts.packed) {
      const cap = maxSamplesPerSiteFor(PACKED_HE_PARAMS, n);
      if (cap < 1) throw new Error(`PACKED_HE_PARAMS hold less than one sample per site for ${n} sites`);
      spec.encryption = { ...PACKED_HE_PARAMS };
      spec.training.maxSamplesPerSite = cap;
      nSamples = Math.min(nSamples, cap);
    }
    if (opts.perChunk !== undefined) spec.ciphertextsPerChunk = opts.perChunk;
    const { manifest, manifestHash } = await createAndStart(url, spec);
    /** Ciphertexts per update.chunk: the spec's, or the coordinator's default for the model's size (study-rules.ts). */
    const K = manifest.ciphertextsPerChunk ?? 1;
    const parts: RawParticipant[] = new Array<RawParticipant>(n);
    await pool(
      Array.from({ length: n }, (_, i) => i),
      8,
      async (i) => {
        const raw = await RawSite.create(url, join(tmp.dir, `s${i}`), { maxPayloadBytes: MAX_PAYLOAD_BYTES });
        raws.push(raw);
        await raw.connected();
        await raw.hello();
        await raw.next('study.announce', 60_000);
        parts[i] = await new RawParticipant(raw, manifest, manifestHash).init();
      },
    );
    for (const p of parts) await p.join(100);
    const dealt = await parts[0].deal(120_000);
    await Promise.all(parts.slice(1).map((p) => p.acceptKey(120_000)));
    await pool(parts, 8, async (p) => void (await p.setup(600_000)));
    await Promise.all(parts.map((p) => p.acceptPeers(1, 600_000)));
    const setupS = (performance.now() - tSetup) / 1000;
    const he = parts[0].he;
    const count = ciphertextCount(he.params, length);
    /** Slots the update fills (values per slot: lanesOf(params)). */
    const slots = packedLength(he.params, length);
    const per = Math.ceil(length / count);
    const t = Number(he.plainModulus);
    // The DISTINCT plaintexts (values in [0, t) for ciphertexts, small floats for plaintext chunks) and their chunks.
    const plains = Array.from({ length: DISTINCT }, (_, d) => Float64Array.from({ length: he.slotCount }, (_, k) => ((d + 1) * 1_000_003 + k * 7919) % t));
    const floats = Array.from({ length: DISTINCT }, (_, d) => Float32Array.from({ length: per }, (_, k) => Math.sin(d + k * 0.001) * 0.01));
    const bodies = mode === 'encrypted' ? plains.map((v) => encryptSlots(he, dealt.sk, v).ciphertexts[0]) : floats.map((f) => new Uint8Array(f.buffer));
    const lastPer = length - (count - 1) * per;
    const lastBodies = mode === 'encrypted' ? bodies : floats.map((f) => new Uint8Array(f.buffer, 0, lastPer * 4));
    // Chunk i of site s carries ciphertexts i·K .. (chunkCiphertextRange); ciphertext c holds plaintext (s + c) mod DISTINCT.
    const chunks = chunkCount(count, K);
    const ctBody = (c: number, d: number) => (c === count - 1 ? lastBodies : bodies)[d];
    const framed = new Map<string, Uint8Array>();
    const chunkBody = (s: number, i: number): Uint8Array => {
      if (K === 1) return ctBody(i, (s + i) % DISTINCT);
      const { first, n: m } = chunkCiphertextRange(i, count, K);
      const key = `${(s + first) % DISTINCT}:${m}:${first + m === count}`;
      let b = framed.get(key);
      if (!b) framed.set(key, (b = packFrames(Array.from({ length: m }, (_, p) => ctBody(first + p, (s + first + p) % DISTINCT)))));
      return b;
    };
    log(
      `${mode}: ${n} sites x ${length.toLocaleString('en')} parameters (${count} ciphertexts in ${chunks} chunks each, ${chunkBody(0, 0).length.toLocaleString('en')} bytes), set up in ${setupS.toFixed(1)} s; uploading ${DISTINCT} distinct pre-${
        mode === 'encrypted' ? 'encrypted ciphertexts' : 'built float32 chunks'
      } reused by every site...`,
    );

    const pid = proc.pid!;
    const baseline = procStatus(pid).rss;
    let peak = baseline;
    let dbPeak = 0;
    let sampling = true;
    const dbFiles = ['coordinator.db', 'coordinator.db-wal'].map((f) => join(dataDir, f));
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, procStatus(pid).rss);
        dbPeak = Math.max(
          dbPeak,
          dbFiles.reduce((a, f) => a + (existsSync(f) ? statSync(f).size : 0), 0),
        );
        await sleep(100);
      }
    })();
    const t0 = Date.now();
    const cpu0 = cpuSeconds(pid);
    const threads0 = threadCpu(pid);
    const bench0 = process.cpuUsage();
    let acked = 0;
    const progress = setInterval(() => log(`  ${acked.toLocaleString('en')} / ${(n * chunks).toLocaleString('en')} chunks acknowledged, RSS ${mib(procStatus(pid).rss).toFixed(0)} MiB`), 15_000);
    try {
      await Promise.all(
        parts.map(async (p, s) => {
          const done = new Set<number>();
          if (s === 0 && opts.probe) {
            const r = await opts.probe({
              send: (body, index) => p.raw.send('update.chunk', manifest.studyId, 1, body, p.chunkMeta(1, index, chunks, nSamples)),
              honest: (i) => chunkBody(0, i),
              chunks,
            });
            for (const i of r.delivered) done.add(i);
            acked += done.size;
          }
          for (let i = 0; i < chunks; i++) {
            if (done.has(i)) continue;
            const a = await p.raw.send('update.chunk', manifest.studyId, 1, chunkBody(s, i), p.chunkMeta(1, i, chunks, nSamples));
            if (!a.ok) throw new Error(`${p.siteId} chunk ${i}: ${a.code} ${a.detail}`);
            acked++;
          }
        }),
      );
    } finally {
      clearInterval(progress);
    }
    const tUploaded = Date.now();
    const coordCpuS = cpuSeconds(pid) - cpu0;
    const threads1 = threadCpu(pid);
    const threadCpuMsPerChunk: Record<string, number> = {};
    for (const [k, v] of threads1) {
      const d = ((v - (threads0.get(k) ?? 0)) * 1000) / (n * chunks);
      if (d >= 0.005) threadCpuMsPerChunk[k] = +d.toFixed(3);
    }
    const benchCpu = process.cpuUsage(bench0);
    const loadAvg = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
    log(
      `  uploaded in ${((tUploaded - t0) / 1000).toFixed(1)} s (RSS ${mib(procStatus(pid).rss).toFixed(0)} MiB, peak so far ${mib(procStatus(pid).hwm).toFixed(0)}); consistency and unmask phases...`,
    );
    await Promise.all(parts.map((p) => p.sign(1, 600_000)));
    // After revealing, a site stops reading its socket until its turn to take the aggregate.
    await Promise.all(
      parts.map(async (p) => {
        const ack = await p.reveal(1, 600_000);
        if (!ack.ok) throw new Error(`${p.siteId} reveal: ${ack.code}`);
        if (!p.raw.inbox.some((e) => e.header.type === 'round.aggregate')) tcpOf(p.raw)?.pause();
      }),
    );
    let closedAtMs = NaN;
    let openedAtMs = NaN;
    for (let i = 0; i < 6000 && !(closedAtMs > 0); i++) {
      const st = await lead<{ roundSummaries: { closedAt: string | null; openedAt: string; state: string; failReason: string | null }[] }>(url, 'GET', `/api/studies/${manifest.studyId}`);
      const r = st.json.roundSummaries[0];
      if (r.state === 'failed') throw new Error(`round failed: ${r.failReason}`);
      if (r.closedAt) closedAtMs = Date.parse(r.closedAt);
      openedAtMs = Date.parse(r.openedAt);
      if (!(closedAtMs > 0)) await sleep(100);
    }
    log(
      `  published ${((closedAtMs - t0) / 1000).toFixed(1)} s after the first chunk (RSS ${mib(procStatus(pid).rss).toFixed(0)} MiB, peak so far ${mib(procStatus(pid).hwm).toFixed(0)}); delivering to ${n} sites, ${DELIVERY_CONCURRENCY} at a time...`,
    );
    let verified = 'not checked';
    let delivered = 0;
    let lastDeliveryMs = closedAtMs;
    await pool(parts, DELIVERY_CONCURRENCY, async (p, i) => {
      tcpOf(p.raw)?.resume();
      const dropped = new Promise<null>((resolve) => p.raw.socket.once('disconnect', () => resolve(null)));
      const env = await Promise.race([p.raw.next('round.aggregate', 600_000), dropped]).catch((e: Error) => {
        log(`  ${p.siteId}: ${e.message}`);
        return null;
      });
      if (!env) log(`  ${p.siteId}: no aggregate (connected: ${p.raw.socket.connected})`);
      if (!env) return;
      delivered++;
      lastDeliveryMs = Math.max(lastDeliveryMs, Date.now());
      if (i === 0) verified = verify(env.body, mode, manifest, count, per, slots, n, plains, floats, he, dealt.sk);
      p.raw.close();
    });
    const deliveryS = (lastDeliveryMs - closedAtMs) / 1000;
    const metrics = await (await fetch(new URL('/metrics', url))).text();
    sampling = false;
    await sampler;
    const hwm = procStatus(pid).hwm;
    proc.kill(nodeArgs.length ? 'SIGINT' : 'SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    // Phase times from the coordinator's own audit log.
    const db = new Database(join(dataDir, 'coordinator.db'), { readonly: true });
    const at = (action: string) => (db.prepare('select ts_ms t from audit_log where action = ? order by id desc limit 1').get(action) as { t: number } | undefined)?.t ?? NaN;
    const summedAt = at('round.summed');
    const lastChunkAt = (db.prepare("select max(ts_ms) t from audit_log where action = 'msg.received' and msg_type = 'update.chunk'").get() as { t: number }).t;
    db.close();
    const firstChunkToPublishS = (closedAtMs - t0) / 1000;
    return {
      mode,
      sites: n,
      params: length,
      chunks,
      ciphertextsPerChunk: K,
      lanes: opts.packed ? 2 : 1,
      workers: opts.workers ?? null,
      rssBaselineMiB: mib(baseline),
      rssPeakMiB: mib(Math.max(peak, hwm)),
      rssGrowthMiB: mib(Math.max(peak, hwm) - baseline),
      rssHwmMiB: mib(hwm),
      firstChunkToPublishS,
      aggregateParamsPerS: (n * length) / firstChunkToPublishS,
      roundS: (closedAtMs - openedAtMs) / 1000,
      uploadS: (tUploaded - t0) / 1000,
      sumsS: (summedAt - lastChunkAt) / 1000,
      unmaskS: (closedAtMs - summedAt) / 1000,
      deliveryS,
      delivered,
      bytesIn: metric(metrics, 'twinfed_bytes_in_total'),
      bytesOut: metric(metrics, 'twinfed_bytes_out_total'),
      dbPeakMiB: mib(dbPeak),
      writesPerCommit: metric(metrics, 'twinfed_group_commit_requests_total') / metric(metrics, 'twinfed_group_commits_total'),
      coordinatorCpuMsPerChunk: (coordCpuS * 1000) / (n * chunks),
      benchCpuMsPerChunk: (benchCpu.user + benchCpu.system) / 1000 / (n * chunks),
      threadCpuMsPerChunk,
      loadAvg,
      verified,
      setupS,
    };
  } finally {
    for (const r of raws) r.close();
    if (proc.exitCode === null) proc.kill('SIGKILL');
    tmp.cleanup();
  }
}

/** Checks the published aggregate: every slot is the sum of what the sites sent (mod t; float sums within rounding). */
function verify(
  body: Uint8Array,
  mode: 'encrypted' | 'plaintext',
  manifest: StudyManifest,
  count: number,
  per: number,
  /** Slots the update fills (packedLength). */
  slots: number,
  n: number,
  plains: Float64Array[],
  floats: Float32Array[],
  he: RawParticipant['he'],
  sk: Uint8Array,
): string {
  const frames = unpackFrames(body).slice(1);
  if (frames.length !== count) throw new Error(`aggregate of ${frames.length} frames, ${count} expected`);
  const t = Number(he.plainModulus);
  const idxs = [0, 1, Math.floor(count / 2), count - 1].filter((x, k, a) => x < count && a.indexOf(x) === k);
  let checked = 0;
  for (const i of idxs) {
    if (mode === 'encrypted') {
      const dec = decryptSlots(he, sk, [frames[i]], i === count - 1 ? slots - i * he.slotCount : he.slotCount);
      for (let k = 0; k < dec.length; k++) {
        let want = 0;
        for (let s = 0; s < n; s++) want = (want + plains[(s + i) % DISTINCT][k]) % t;
        if (dec[k] !== want) throw new Error(`aggregate chunk ${i} slot ${k}: ${dec[k]}, expected ${want}`);
        checked++;
      }
    } else {
      const f = frames[i];
      const sums = new Float64Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength));
      for (let k = 0; k < sums.length; k++) {
        let want = 0;
        for (let s = 0; s < n; s++) want += floats[(s + i) % DISTINCT][k];
        if (Math.abs(sums[k] - want) > 1e-9) throw new Error(`plaintext aggregate chunk ${i} value ${k}: ${sums[k]}, expected ${want}`);
        checked++;
      }
    }
  }
  void manifest;
  void per;
  return `${checked.toLocaleString('en')} values of ${idxs.length} chunks exact`;
}
