/**
 * Cost of encrypted model updates: bytes on the wire, encrypt and aggregate
 * time, and the error encryption adds, for our BFV scheme, the common CKKS
 * default, and plain float32.
 *
 *   node shared/dist/bench/he.js [--json] [--params N]
 *
 * Two sites (n = 1 each) send deltas uniform in [-1, 1] (clip bound B = 1);
 * the error column is max |decrypted mean - exact mean| in units of B.
 * Progress goes to stderr; with --json the last stdout line is one JSON object.
 */
import { createCkksDefault } from '../he/ckks-default.js';
import {
  DEFAULT_HE_PARAMS,
  addCiphertexts,
  createHeContext,
  decryptAverage,
  encryptWeightedUpdate,
  generateSecretKey,
} from '../he/index.js';

interface Row {
  name: string;
  bytesPerParam: number;
  encryptMsPer1M: number;
  addMsPer1M: number;
  maxAbsError: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function log(msg: string): void {
  process.stderr.write(`[bench:he] ${msg}\n`);
}

function uniformDelta(n: number, seed: number): Float32Array {
  // xorshift32: deterministic inputs across runs
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 0xffffffff) * 2 - 1;
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const sumBytes = (cts: Uint8Array[]): number => cts.reduce((s, c) => s + c.length, 0);

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const P = Number(arg('--params') ?? 262144);
  const per1M = (ms: number): number => (ms * 1e6) / P;
  const a = uniformDelta(P, 1);
  const b = uniformDelta(P, 2);
  const exact = new Float64Array(P);
  for (let i = 0; i < P; i++) exact[i] = (a[i] + b[i]) / 2;
  const rows: Row[] = [];

  // Ours: BFV N=4096, seeded symmetric.
  log(`bfv-sym-seeded: ${P} parameters, 2 sites`);
  const ctx = await createHeContext(DEFAULT_HE_PARAMS);
  const sk = generateSecretKey(ctx);
  encryptWeightedUpdate(ctx, sk, a.subarray(0, ctx.slotCount), 1, 1); // warm-up
  const ua = encryptWeightedUpdate(ctx, sk, a, 1, 1);
  const ub = encryptWeightedUpdate(ctx, sk, b, 1, 1);
  const first = ua.ciphertexts.map((c) => addCiphertexts(ctx, null, c));
  let t0 = performance.now();
  const sums = first.map((acc, i) => addCiphertexts(ctx, acc, ub.ciphertexts[i]));
  const oursAddMs = performance.now() - t0;
  const avg = decryptAverage(ctx, sk, sums, P, 2, 1);
  rows.push({
    name: 'bfv-sym-seeded N=4096 (ours)',
    bytesPerParam: ua.bytes / P,
    encryptMsPer1M: per1M((ua.encryptMs + ub.encryptMs) / 2),
    addMsPer1M: per1M(oursAddMs),
    maxAbsError: maxAbsDiff(avg, exact),
  });

  // Common default: CKKS N=8192 {60,40,60}, scale 2^40, public key.
  log('ckks default N=8192');
  const ckks = await createCkksDefault();
  try {
    const a64 = Float64Array.from(a);
    const b64 = Float64Array.from(b);
    ckks.encrypt(a64.subarray(0, ckks.slotCount)); // warm-up
    t0 = performance.now();
    const ca = ckks.encrypt(a64);
    const cb = ckks.encrypt(b64);
    const ckksEncMs = (performance.now() - t0) / 2;
    t0 = performance.now();
    const csum = ca.map((acc, i) => ckks.add(acc, cb[i]));
    const ckksAddMs = performance.now() - t0;
    const dec = ckks.decrypt(csum, P).map((x) => x / 2);
    rows.push({
      name: 'ckks N=8192 {60,40,60} pk (default)',
      bytesPerParam: sumBytes(ca) / P,
      encryptMsPer1M: per1M(ckksEncMs),
      addMsPer1M: per1M(ckksAddMs),
      maxAbsError: maxAbsDiff(dec, exact),
    });
  } finally {
    ckks.dispose();
  }

  // Plain float32: weighted sum in float32, as a coordinator would without HE.
  log('plain float32');
  const acc = new Float32Array(P);
  t0 = performance.now();
  for (let i = 0; i < P; i++) acc[i] = a[i] + b[i];
  const plainAddMs = performance.now() - t0;
  const plainAvg = acc.map((x) => x / 2);
  rows.push({ name: 'plain float32', bytesPerParam: 4, encryptMsPer1M: 0, addMsPer1M: per1M(plainAddMs), maxAbsError: maxAbsDiff(plainAvg, exact) });

  // Ratios against the common default (row 2), measured in this same run.
  const def0 = rows[1];
  const header = ['scheme', 'bytes/param', 'vs default', 'encrypt ms/1M', 'vs default', 'add ms/1M', 'max abs err (xB)'];
  const cells = rows.map((r) => [r.name, r.bytesPerParam.toFixed(3), `${(r.bytesPerParam / def0.bytesPerParam).toFixed(3)}x`, r.encryptMsPer1M.toFixed(0), `${(r.encryptMsPer1M / def0.encryptMsPer1M).toFixed(2)}x`, r.addMsPer1M.toFixed(1), r.maxAbsError.toExponential(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
  console.log(`HE update cost, ${P} parameters, 2 sites, deltas U[-1,1], B = 1 (node ${process.version}, ${process.arch})`);
  console.log(line(header));
  for (const c of cells) console.log(line(c));
  if (json) {
    const [ours, def] = rows;
    console.log(
      JSON.stringify({
        bytesPerParam: ours.bytesPerParam,
        defaultBytesPerParam: def.bytesPerParam,
        encryptMsPer1M: ours.encryptMsPer1M,
        defaultEncryptMsPer1M: def.encryptMsPer1M,
        maxAbsError: ours.maxAbsError,
        addMsPer1M: ours.addMsPer1M,
        defaultAddMsPer1M: def.addMsPer1M,
        defaultMaxAbsError: def.maxAbsError,
        params: P,
      }),
    );
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:he failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
