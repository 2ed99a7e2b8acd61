/**
 * npm run bench:round-cost — where the time of a tiny round goes (the fixed cost of a round).
 *
 * Three sites (RawParticipant: the site node's own protocol code, real handshakes, signed
 * envelopes, real sockets, masking and BFV encryption) run ROUNDS rounds of the response demo's
 * study (softmax regression, 60 parameters: one ciphertext) against a real coordinator process on
 * loopback. Each round's secure-aggregation phases are timed from the sites' side:
 *
 *   start→setup sent   mask set-up built (a site node trains here; these sites do not)
 *   setup ack          one message round trip (socket, signature check, commit, signed receipt)
 *   →peers             last set-up acknowledged → mask.peers at every site: the coordinator fixes the key set
 *   mask+encrypt       masking and encrypting the update (site side)
 *   chunk ack          the chunk's round trip (its ciphertext validated and added on a worker)
 *   →survivors         last chunk acknowledged → mask.survivors everywhere
 *   consistency ack, →reveal, unmask ack, →aggregate: likewise for the last two phases
 *
 * in three coordinator set-ups, to separate the causes: the defaults (a database on disk, SQLite
 * synchronous = FULL: every commit waits for fsync; a deadline tick of 1000 ms), the database on
 * tmpfs (fsync costs nothing there: the difference is the fsync time), and a tick of 100 ms (a
 * phase that waited for the tick would speed up). The medians over the rounds are printed, and the
 * number of messages, signatures and commits of one round, from the coordinator's audit log.
 *
 *   node test/dist/bench/round-cost.js [--rounds 10] [--json]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from '@twinfed/shared/db/driver';
import type { StudySpec } from '@twinfed/protocols';
import { initSodium } from '@twinfed/shared/crypto/index';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { ADMIN_TOKEN, RawSite, createAndStart, enrolNewSite, lead, tempDir } from '../harness.js';
import { RawParticipant } from '../raw-protocol.js';

const BIN = process.env.TWINFED_BENCH_COORDINATOR_BIN ?? resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../cli/dist/bin.js');
const argNum = (name: string, d: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
};
const ROUNDS = argNum('--rounds', 10);
const json = process.argv.includes('--json');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

const PHASES = [
  'setup phase: start → mask.peers at all',
  '  site builds its mask set-up',
  '  mask.setup round trip',
  'upload phase: peers → mask.survivors at all',
  '  site masks and encrypts',
  '  update.chunk round trip',
  'consistency phase: survivors → mask.reveal at all',
  '  mask.consistency round trip',
  'unmask phase: reveal → round.aggregate at all',
  '  mask.unmask round trip',
  'round: start → aggregate at all',
  'coordinator: opened → closed',
  'coordinator: closed → next opened',
  '(site unmasks the aggregate)',
] as const;
type Phase = (typeof PHASES)[number];

interface Variant {
  name: string;
  tickMs: number;
  dataRoot: string;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

async function runVariant(v: Variant): Promise<{ medians: Record<Phase, number>; counts: Record<string, number> }> {
  await initSodium();
  const tmp = tempDir('round-cost');
  const dataParent = mkdtempSync(join(v.dataRoot, 'twinfed-round-cost-'));
  const dataDir = join(dataParent, 'c');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = [BIN, 'coordinator', 'start', '--data-dir', dataDir, '--port', String(port), '--admin-token', ADMIN_TOKEN, '--log-level', 'error', '--tick-ms', String(v.tickMs)];
  // TWINFED_BENCH_STRACE=FILE: count the coordinator's fsync/fdatasync calls (strace -c; slows it down, for counting only).
  const strace = process.env.TWINFED_BENCH_STRACE;
  const proc: ChildProcess = strace
    ? spawn('strace', ['-f', '-c', '-e', 'trace=fsync,fdatasync', '-o', `${strace}.${v.dataRoot.replace(/\W/g, '')}.${v.tickMs}`, process.execPath, ...args], { stdio: 'ignore' })
    : spawn(process.execPath, [...(process.env.TWINFED_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean), ...args], { stdio: 'ignore' });
  const parts: RawParticipant[] = [];
  try {
    for (let i = 0; ; i++) {
      if ((await fetch(new URL('/healthz', url)).catch(() => null))?.ok) break;
      if (i > 200) throw new Error('coordinator did not start');
      await sleep(50);
    }
    for (const d of ['a', 'b', 'c']) await enrolNewSite(url, join(tmp.dir, d), d.toUpperCase());
    const spec = responseStudySpec(ROUNDS) as StudySpec;
    const { manifest, manifestHash, studyId } = await createAndStart(url, spec);
    for (const d of ['a', 'b', 'c']) {
      const raw = await RawSite.create(url, join(tmp.dir, d));
      await raw.connected();
      await raw.hello();
      await raw.next('study.announce', 30_000);
      parts.push(await new RawParticipant(raw, manifest, manifestHash).init());
    }
    for (const p of parts) await p.join(100, 3);
    await parts[0].deal(30_000);
    await Promise.all(parts.slice(1).map((p) => p.acceptKey(30_000)));
    // When each site last put an envelope on its socket: a round trip is measured from there to its acknowledgement.
    const emittedAt = new Map<RawParticipant, number>();
    for (const p of parts) {
      const emit = p.raw.emit.bind(p.raw);
      p.raw.emit = (env: unknown) => {
        emittedAt.set(p, performance.now());
        return emit(env);
      };
    }
    const delta = Float32Array.from({ length: manifest.updateLength }, (_, k) => Math.sin(k) * 0.01);
    const rows: Record<Phase, number>[] = [];
    const now = () => performance.now();
    for (let round = 1; round <= ROUNDS; round++) {
      const t: Record<string, number[]> = {};
      const mark = (k: string, x: number) => (t[k] ??= []).push(x);
      await Promise.all(
        parts.map(async (p) => {
          const env = await p.raw.next('round.start', 60_000);
          const t0 = now();
          mark('start', t0);
          const start = JSON.parse(Buffer.from(env.body).toString('utf8')) as Parameters<RawParticipant['sendSetup']>[1];
          await p.sendSetup(env.header.round!, start);
          mark('built', emittedAt.get(p)! - t0);
          mark('setupRtt', now() - emittedAt.get(p)!);
          const peers = await p.raw.next('mask.peers', 60_000);
          mark('peers', now());
          p.raw.inbox.unshift(peers);
          const tp = now();
          const { ciphertexts } = await p.prepareUpload(round, delta, 10, 60_000);
          mark('encrypt', now() - tp);
          const tc = now();
          for (let i = 0; i < ciphertexts.length; i++) await p.raw.send('update.chunk', studyId, round, ciphertexts[i], p.chunkMeta(round, i, ciphertexts.length, 10));
          mark('chunkRtt', now() - tc);
          const surv = await p.raw.next('mask.survivors', 60_000);
          mark('survivors', now());
          p.raw.inbox.unshift(surv);
          const ts = now();
          await p.sign(round, 60_000);
          mark('consistencyRtt', now() - ts);
          const rev = await p.raw.next('mask.reveal', 60_000);
          mark('reveal', now());
          p.raw.inbox.unshift(rev);
          const tr = now();
          await p.reveal(round, 60_000);
          mark('unmaskRtt', now() - tr);
          const agg = await p.raw.next('round.aggregate', 60_000);
          mark('aggregate', now());
          p.raw.inbox.unshift(agg);
          const ta = now();
          await p.aggregate(round, 60_000);
          mark('unmaskSite', now() - ta);
        }),
      );
      const max = (k: string) => Math.max(...t[k]);
      const min = (k: string) => Math.min(...t[k]);
      const r = {} as Record<Phase, number>;
      r['setup phase: start → mask.peers at all'] = max('peers') - min('start');
      r['  site builds its mask set-up'] = median(t.built);
      r['  mask.setup round trip'] = median(t.setupRtt);
      r['upload phase: peers → mask.survivors at all'] = max('survivors') - max('peers');
      r['  site masks and encrypts'] = median(t.encrypt);
      r['  update.chunk round trip'] = median(t.chunkRtt);
      r['consistency phase: survivors → mask.reveal at all'] = max('reveal') - max('survivors');
      r['  mask.consistency round trip'] = median(t.consistencyRtt);
      r['unmask phase: reveal → round.aggregate at all'] = max('aggregate') - max('reveal');
      r['  mask.unmask round trip'] = median(t.unmaskRtt);
      r['round: start → aggregate at all'] = max('aggregate') - min('start');
      r['(site unmasks the aggregate)'] = median(t.unmaskSite);
      rows.push(r);
    }
    const st = await lead<{ roundSummaries: { openedAt: string; closedAt: string | null }[] }>(url, 'GET', `/api/studies/${studyId}`);
    const sums = st.json.roundSummaries;
    sums.forEach((s, i) => {
      if (rows[i]) {
        rows[i]['coordinator: opened → closed'] = Date.parse(s.closedAt!) - Date.parse(s.openedAt);
        rows[i]['coordinator: closed → next opened'] = sums[i + 1] ? Date.parse(sums[i + 1].openedAt) - Date.parse(s.closedAt!) : NaN;
      }
    });
    for (const p of parts) p.raw.close();
    // Under strace, the coordinator is strace's child: killing it makes strace print its counts and exit.
    const victim = strace ? Number(readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(' ')[0]) : proc.pid!;
    process.kill(victim, process.env.TWINFED_BENCH_NODE_ARGS ? 'SIGINT' : 'SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    // One middle round's traffic, from the coordinator's audit log.
    const db = new Database(join(dataDir, 'coordinator.db'), { readonly: true });
    const mid = Math.max(1, Math.floor(ROUNDS / 2));
    const n = (where: string) => (db.prepare(`select count(*) n from audit_log where study_id = ? and round = ? and ${where}`).get(studyId, mid) as { n: number }).n;
    const received = n("action = 'msg.received'");
    const sent = n("action = 'msg.sent'");
    const entries = n('1 = 1');
    db.close();
    const counts = {
      'messages received': received,
      'messages sent': sent,
      'audit entries (each signed)': entries,
      'Ed25519 signatures made': entries + received + sent, // every entry, a receipt per message received, every envelope sent
      'Ed25519 signatures checked': received,
    };
    const medians = {} as Record<Phase, number>;
    for (const ph of PHASES) medians[ph] = median(rows.map((r) => r[ph]).filter((x) => Number.isFinite(x)));
    return { medians, counts };
  } finally {
    for (const p of parts) p.raw.close();
    if (proc.exitCode === null) proc.kill('SIGKILL');
    tmp.cleanup();
    rmSync(dataParent, { recursive: true, force: true });
  }
}

const variants: Variant[] = [
  { name: 'disk, tick 1000 ms (defaults)', tickMs: 1000, dataRoot: '/tmp' },
  { name: 'tmpfs (fsync free), tick 1000 ms', tickMs: 1000, dataRoot: '/dev/shm' },
  { name: 'disk, tick 100 ms', tickMs: 100, dataRoot: '/tmp' },
].filter((v) => !process.env.TWINFED_BENCH_VARIANT || v.name.startsWith(process.env.TWINFED_BENCH_VARIANT));
const results = [];
for (const v of variants) {
  process.stderr.write(`${v.name}: ${ROUNDS} rounds...\n`);
  results.push({ variant: v.name, ...(await runVariant(v)) });
}
console.log(`a tiny round (3 sites, response model: 60 parameters, 1 ciphertext), loopback; medians over ${ROUNDS} rounds, ms`);
const w0 = Math.max(...PHASES.map((p) => p.length));
console.log(`${''.padEnd(w0)}  ${results.map((r) => r.variant.padStart(34)).join('')}`);
for (const ph of PHASES) console.log(`${ph.padEnd(w0)}  ${results.map((r) => r.medians[ph].toFixed(1).padStart(34)).join('')}`);
console.log('\none round (the middle one), from the coordinator audit log:');
for (const k of Object.keys(results[0].counts)) console.log(`  ${k.padEnd(30)} ${results.map((r) => String(r.counts[k]).padStart(6)).join('')}`);
const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
console.log(`load average at the end: ${load}`);
if (json) console.log(JSON.stringify({ rounds: ROUNDS, results }));
process.exit(0);
