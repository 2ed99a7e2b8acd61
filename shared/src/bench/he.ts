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
 *
 * Second table, same run: our BFV scheme with secure-aggregation masks
 * (shared/src/secagg, Bonawitz et al. 2017) for rounds of 3 and 10 sites,
 * against the unmasked row above. Every site of the round quantises
 * (quantizeToZt), masks with its n-1 peers (maskInput) and encrypts
 * (encryptSlots); for 10 sites two drop after the key set-up, so the
 * decrypting site also removes their pairwise masks. Columns:
 *  - encrypt ms/1M: quantise + mask + encrypt, mean over the sites that
 *    upload; the unmasked row times encryptWeightedUpdate (which quantises
 *    too) on the same sites' deltas, interleaved with the masked runs
 *    (alternating which goes first), so the ratio compares like with like
 *    on a machine whose speed drifts;
 *  - mask ms/1M: the maskInput part of it (n masks of P slots);
 *  - unmask ms/1M: unmaskSum at the decrypting site;
 *  - bytes/param: uploaded ciphertext bytes (masking leaves them unchanged);
 *  - setup B/site: what one site sends once per round for the key set-up,
 *    independent of the model size: its n-1 share boxes (sealShares, base64
 *    as sent in JSON) plus its signed keys statement (canonical JSON of the
 *    keysStatementFields, the kind and the base64 Ed25519 signature), UTF-8;
 *  - max abs err: of the unmasked FedAvg of the survivors, in units of B.
 *
 * The first table also has our layout-2 row (PACKED_HE_PARAMS: two values per
 * slot, 46-bit t, p = 13, TWH2 framing with 60-bit words; shared/src/he/lanes.ts).
 *
 * Third table, capacity: one secure-aggregation round of 100 sites (no drops)
 * over a small model (--capacity-params, default 32768 = 4 packed ciphertexts),
 * deltas U[-1.2, 1.2] clipped to B = 1 (so lanes reach ±Σn·2^p), for the
 * unpacked default and the packed parameters on the same deltas and weights:
 * 11 sites of 6 samples and 89 of 5, Σn = 511 = maxTotalSamples(PACKED), and
 * once more packed with n = 1 per site (Σn = 100, the larger error bound
 * (#sites/Σn)·B/2^(p+1)). Columns: upload and downlink (the coordinator's
 * aggregate, both polynomials: it is not seeded) bytes per parameter and
 * their ratio to the unpacked row of the same run, max abs error of the
 * FedAvg mean (units of B) and its bound, the noise budget left in the sum.
 *
 * --json fields of the first two tables (ours = the unpacked default):
 *   unmaskedBytesPerParam, unmaskedMaxAbsError: ours, first table (2 sites)
 *   encryptMsPer1M, addMsPer1M, default*: first table
 *   packedUnmaskedBytesPerParam, packedEncryptMsPer1M, packedAddMsPer1M, packedUnmaskedMaxAbsError: the layout-2 row
 *   unmaskedEncryptMsPerMParams: number   (the interleaved unmasked runs; encryptMsPer1M is the first table's)
 *   maskedEncryptMsPerMParams:   { "3": number, "10": number }   keyed by sites per round
 *   maskedBytesPerParam:         { "3": number, "10": number }
 *   setupBytesPerSite:           { "3": number, "10": number }
 *   maskMsPerMParams, unmaskMsPerMParams, maskedMaxAbsError: same shape
 * and of the capacity table (packed, masks on, 100 sites):
 *   bytesPerParam, downlinkBytesPerParam: bytes per parameter up / down
 *   maxAbsError: the larger of the two packed runs, in units of B (= clipBound)
 *   errorBound: (#sites/Σn)·B/2^(p+1) + 2^-24·B of that run
 *   clipBound, maxSites, maxSamplesPerRound (Σn of the run at capacity), lanes,
 *   precisionBits, plainModulusBits, capacityParams
 *   noiseBudgetBitsAfterSum: least budget over the sum's ciphertexts (100 additions)
 *   noiseBudgetBitsAfter255: one ciphertext after 255 additions (the roster maximum)
 *   unpacked: { bytesPerParam, downlinkBytesPerParam, maxAbsError, noiseBudgetBitsAfterSum, precisionBits, plainModulusBits } (same run)
 *   vsUnpacked: { bytesPerParam, downlinkBytesPerParam }: ratios packed / unpacked
 */
import { canonicalJson, utf8 } from '@twinfed/protocols';
import { generateIdentity } from '../crypto/identity.js';
import { initSodium, toB64 } from '../crypto/sodium.js';
import { signStatement } from '../crypto/statement.js';
import { createCkksDefault } from '../he/ckks-default.js';
import {
  DEFAULT_HE_PARAMS,
  PACKED_HE_PARAMS,
  addCiphertexts,
  averageFromCentred,
  createHeContext,
  decryptAverage,
  decryptSlots,
  encryptSlots,
  encryptWeightedUpdate,
  generateSecretKey,
  laneSumLimitQ,
  lanesOf,
  maxTotalSamples,
  noiseBudgetBits,
  packLanes,
  packedLength,
  quantizeToZt,
  unpackLanes,
  type HeContext,
} from '../he/index.js';
import {
  SECAGG_KEYS_KIND,
  centreZt,
  generateRoundSecrets,
  keysStatementFields,
  maskInput,
  sealShares,
  secaggThreshold,
  selfMaskCommitment,
  splitSecret,
  unmaskSum,
  type RoundContext,
} from '../secagg/index.js';

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

interface MaskedRow {
  sites: number;
  /** encryptWeightedUpdate times (ms) of the same sites on the same deltas, interleaved with the masked runs. */
  unmaskedMs: number[];
  dropped: number;
  bytesPerParam: number;
  encryptMsPer1M: number;
  maskMsPer1M: number;
  unmaskMsPer1M: number;
  maxAbsError: number;
  setupBytesPerSite: number;
}

/**
 * One secure-aggregation round of n sites (n = 1 sample each, B = 1) over P
 * parameters, `dropIdx` dropping after the key set-up; costs as in the header.
 */
async function maskedRound(ctx: HeContext, sk: Uint8Array, P: number, n: number, dropIdx: number[]): Promise<MaskedRow> {
  const per1M = (ms: number): number => (ms * 1e6) / P;
  const t = ctx.plainModulus;
  const p = ctx.params.precisionBits;
  const round: RoundContext = { studyId: 'bench-study', manifestHash: '0'.repeat(64), round: 1 };
  const ids = Array.from({ length: n }, (_, i) => `site-${String(i).padStart(2, '0')}`);
  const secrets = ids.map(() => generateRoundSecrets());
  const identities = ids.map(() => generateIdentity());
  const survivors = ids.map((_, i) => i).filter((i) => !dropIdx.includes(i));

  // key set-up bytes of site 0: n - 1 share boxes + its signed keys statement
  const thr = secaggThreshold(n);
  const bShares = await splitSecret(secrets[0].b, n, thr);
  const sShares = await splitSecret(secrets[0].sSk, n, thr);
  let setupBytes = 0;
  for (let j = 1; j < n; j++) {
    setupBytes += sealShares(round, ids[0], ids[j], { bShare: bShares[j], sShare: sShares[j] }, identities[0].x25519SecretKey, identities[j].x25519PublicKey).length;
  }
  const fields = keysStatementFields(round, ids[0], toB64(secrets[0].sPk), selfMaskCommitment(round, ids[0], secrets[0].b));
  const signature = signStatement(SECAGG_KEYS_KIND, fields, identities[0].ed25519SecretKey);
  setupBytes += utf8(canonicalJson({ ...fields, kind: SECAGG_KEYS_KIND, signature })).length;

  // every surviving site: quantise + mask + encrypt
  const deltas = survivors.map((i) => uniformDelta(P, 100 + i));
  // and, interleaved (alternating which goes first), the unmasked path on the same delta
  let encMs = 0;
  let maskMs = 0;
  let bytes = 0;
  const unmaskedMs: number[] = [];
  const uploads: Uint8Array[][] = [];
  survivors.forEach((i, k) => {
    const peers = ids.flatMap((id, j) => (j === i ? [] : [{ siteId: id, sPk: secrets[j].sPk }]));
    const unmasked = (): void => {
      unmaskedMs.push(encryptWeightedUpdate(ctx, sk, deltas[k], 1, 1).encryptMs);
    };
    if (k % 2 === 0) unmasked();
    const t0 = performance.now();
    const q = quantizeToZt(deltas[k], 1, 1, p, t).values;
    const t1 = performance.now();
    const y = maskInput(round, t, ids[i], secrets[i], q, peers);
    const t2 = performance.now();
    const enc = encryptSlots(ctx, sk, y);
    encMs += performance.now() - t0;
    maskMs += t2 - t1;
    bytes += enc.bytes;
    uploads.push(enc.ciphertexts);
    if (k % 2 === 1) unmasked();
  });

  // coordinator: sums (adding costs what it costs unmasked: same ciphertexts)
  let sums = uploads[0].map((c) => addCiphertexts(ctx, null, c));
  for (let k = 1; k < uploads.length; k++) sums = sums.map((acc, c) => addCiphertexts(ctx, acc, uploads[k][c]));

  // a site: decrypt, unmask, average
  const slots = decryptSlots(ctx, sk, sums, P);
  const tUnmask = performance.now();
  unmaskSum(
    round,
    t,
    slots,
    survivors.map((i) => ({ siteId: ids[i], b: secrets[i].b })),
    dropIdx.map((i) => ({ siteId: ids[i], sSk: secrets[i].sSk })),
    new Map(survivors.map((i) => [ids[i], secrets[i].sPk])),
  );
  const unmaskMs = performance.now() - tUnmask;
  const avg = averageFromCentred(centreZt(slots, t), survivors.length, 1, p, t);
  const exact = new Float64Array(P);
  for (const d of deltas) for (let i = 0; i < P; i++) exact[i] += d[i] / survivors.length;

  const s = survivors.length;
  return {
    sites: n,
    unmaskedMs,
    dropped: dropIdx.length,
    bytesPerParam: bytes / s / P,
    encryptMsPer1M: per1M(encMs / s),
    maskMsPer1M: per1M(maskMs / s),
    unmaskMsPer1M: per1M(unmaskMs),
    maxAbsError: maxAbsDiff(avg, exact),
    setupBytesPerSite: setupBytes,
  };
}

interface CapacityRow {
  name: string;
  sites: number;
  totalSamples: number;
  upBytesPerParam: number;
  downBytesPerParam: number;
  maxAbsError: number;
  errorBound: number;
  noiseBudgetBits: number;
}

/**
 * One masked round of weights.length sites (no drops) over P parameters at clip bound 1: every
 * site quantises, packs (a no-op in layout 1), masks with all peers and encrypts; the coordinator
 * adds; a site decrypts, unmasks, unpacks with the lane guard and averages. Error against the
 * exact weighted mean of the clipped deltas.
 */
async function capacityRound(name: string, ctx: HeContext, sk: Uint8Array, P: number, weights: number[]): Promise<CapacityRow> {
  const t = ctx.plainModulus;
  const p = ctx.params.precisionBits;
  const round: RoundContext = { studyId: 'bench-capacity', manifestHash: '1'.repeat(64), round: 1 };
  const ids = weights.map((_, i) => `site-${String(i).padStart(3, '0')}`);
  const secrets = ids.map(() => generateRoundSecrets());
  const total = weights.reduce((a, b) => a + b, 0);
  const exact = new Float64Array(P);
  let up = 0;
  let sums: Uint8Array[] | null = null;
  for (const [i, id] of ids.entries()) {
    const d = uniformDelta(P, 5000 + i).map((x) => 1.2 * x);
    for (let k = 0; k < P; k++) exact[k] += (weights[i] * Math.max(-1, Math.min(1, d[k]))) / total;
    const q = quantizeToZt(d, weights[i], 1, p, t).values;
    const peers = ids.flatMap((pid, j) => (j === i ? [] : [{ siteId: pid, sPk: secrets[j].sPk }]));
    const enc = encryptSlots(ctx, sk, maskInput(round, t, id, secrets[i], packLanes(ctx, q), peers));
    up += enc.bytes;
    const prev: Uint8Array[] | null = sums;
    sums = enc.ciphertexts.map((c, k) => addCiphertexts(ctx, prev ? prev[k] : null, c));
  }
  const down = sums!.reduce((a, c) => a + c.length, 0);
  const budget = Math.min(...sums!.map((c) => noiseBudgetBits(ctx, sk, c)));
  const slots = decryptSlots(ctx, sk, sums!, packedLength(ctx.params, P));
  unmaskSum(
    round,
    t,
    slots,
    ids.map((id, i) => ({ siteId: id, b: secrets[i].b })),
    [],
    new Map(),
  );
  const avg = averageFromCentred(unpackLanes(ctx, slots, P, laneSumLimitQ(ctx.params, total)), total, 1, p);
  return {
    name,
    sites: weights.length,
    totalSamples: total,
    upBytesPerParam: up / weights.length / P,
    downBytesPerParam: down / P,
    maxAbsError: maxAbsDiff(avg, exact),
    errorBound: (weights.length / total) * 2 ** -(p + 1) + 2 ** -24,
    noiseBudgetBits: budget,
  };
}

/** Noise budget of one ciphertext after `k` additions of fresh encryptions of uniform slots. */
function budgetAfterAdditions(ctx: HeContext, sk: Uint8Array, k: number): number {
  const tn = Number(ctx.plainModulus);
  let acc: Uint8Array | null = null;
  for (let i = 0; i < k; i++) {
    const v = uniformDelta(ctx.slotCount, 9000 + i).map((x) => Math.floor(((x + 1) / 2) * tn) % tn);
    acc = addCiphertexts(ctx, acc, encryptSlots(ctx, sk, Float64Array.from(v)).ciphertexts[0]);
  }
  return noiseBudgetBits(ctx, sk, acc!);
}

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
  first.forEach((acc, i) => addCiphertexts(ctx, acc, ub.ciphertexts[i])); // warm-up of the add path, untimed
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

  // Ours, layout 2: two values per slot, TWH2 (60-bit words).
  log(`bfv-sym-seeded, 2 lanes, TWH2: ${P} parameters, 2 sites`);
  const pctx = await createHeContext(PACKED_HE_PARAMS);
  const psk = generateSecretKey(pctx);
  encryptWeightedUpdate(pctx, psk, a.subarray(0, 2 * pctx.slotCount), 1, 1); // warm-up
  const pa = encryptWeightedUpdate(pctx, psk, a, 1, 1);
  const pb = encryptWeightedUpdate(pctx, psk, b, 1, 1);
  const pfirst = pa.ciphertexts.map((c) => addCiphertexts(pctx, null, c));
  pfirst.forEach((acc, i) => addCiphertexts(pctx, acc, pb.ciphertexts[i])); // warm-up, untimed
  t0 = performance.now();
  const psums = pfirst.map((acc, i) => addCiphertexts(pctx, acc, pb.ciphertexts[i]));
  const packedAddMs = performance.now() - t0;
  rows.push({
    name: `bfv-sym-seeded N=4096, ${lanesOf(PACKED_HE_PARAMS)} lanes, TWH2 (ours, packed)`,
    bytesPerParam: pa.bytes / P,
    encryptMsPer1M: per1M((pa.encryptMs + pb.encryptMs) / 2),
    addMsPer1M: per1M(packedAddMs),
    maxAbsError: maxAbsDiff(decryptAverage(pctx, psk, psums, P, 2, 1), exact),
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

  // Ours with secure-aggregation masks, rounds of 3 and 10 sites (2 of 10 drop).
  await initSodium();
  await maskedRound(ctx, sk, 4 * ctx.slotCount, 3, []); // warm-up of every path
  const masked: MaskedRow[] = [];
  for (const [n, drop] of [
    [3, []],
    [10, [3, 7]],
  ] as [number, number[]][]) {
    log(`bfv-sym-seeded + secagg masks: round of ${n} sites, ${drop.length} dropped`);
    masked.push(await maskedRound(ctx, sk, P, n, drop));
  }

  // Capacity: 100 masked sites on a small model, unpacked vs packed, same deltas and weights.
  const CP = Number(arg('--capacity-params') ?? 4 * 2 * pctx.slotCount);
  const SITES = 100;
  const full = maxTotalSamples(PACKED_HE_PARAMS); // 511
  const weights = Array.from({ length: SITES }, (_, i) => Math.floor(full / SITES) + (i < full % SITES ? 1 : 0));
  const ones = weights.map(() => 1);
  log(`capacity: ${SITES} masked sites, Σn = ${full}, ${CP} parameters, unpacked`);
  const capUnpacked = await capacityRound('bfv-sym-seeded (unpacked, TWH1)', ctx, sk, CP, weights);
  log(`capacity: ${SITES} masked sites, Σn = ${full}, ${CP} parameters, 2 lanes`);
  const capPacked = await capacityRound(`${lanesOf(PACKED_HE_PARAMS)} lanes, TWH2 (packed)`, pctx, psk, CP, weights);
  log(`capacity: ${SITES} masked sites, n = 1 each, ${CP} parameters, 2 lanes`);
  const capPackedOnes = await capacityRound(`${lanesOf(PACKED_HE_PARAMS)} lanes, TWH2, n = 1 per site`, pctx, psk, CP, ones);
  log('noise budget after 255 additions, packed');
  const budget255 = budgetAfterAdditions(pctx, psk, 255);

  // Ratios against the common default (CKKS row), measured in this same run.
  const def0 = rows[2];
  const header = ['scheme', 'bytes/param', 'vs default', 'encrypt ms/1M', 'vs default', 'add ms/1M', 'max abs err (xB)'];
  const cells = rows.map((r) => [
    r.name,
    r.bytesPerParam.toFixed(3),
    `${(r.bytesPerParam / def0.bytesPerParam).toFixed(3)}x`,
    r.encryptMsPer1M.toFixed(0),
    `${(r.encryptMsPer1M / def0.encryptMsPer1M).toFixed(2)}x`,
    r.addMsPer1M.toFixed(1),
    r.maxAbsError.toExponential(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
  console.log(`HE update cost, ${P} parameters, 2 sites, deltas U[-1,1], B = 1 (node ${process.version}, ${process.arch})`);
  console.log(line(header));
  for (const c of cells) console.log(line(c));

  // Masked rows, ratios against the unmasked path timed on the same sites and deltas, interleaved.
  const unmaskedRuns = masked.flatMap((m) => m.unmaskedMs);
  const unmaskedEncryptMsPer1M = per1M(unmaskedRuns.reduce((a, x) => a + x, 0) / unmaskedRuns.length);
  const ours0 = { ...rows[0], name: `${rows[0].name}, unmasked`, encryptMsPer1M: unmaskedEncryptMsPer1M };
  console.log('');
  console.log(`Secure-aggregation masks: one site's cost, mean over the uploading sites (2 of 10 sites drop), ${P} parameters;`);
  console.log(`unmasked row: encryptWeightedUpdate on the same ${unmaskedRuns.length} site deltas, interleaved with the masked runs`);
  const mHeader = ['scheme', 'bytes/param', 'vs unmasked', 'encrypt ms/1M', 'vs unmasked', 'mask ms/1M', 'unmask ms/1M', 'max abs err (xB)', 'setup B/site'];
  const mCells = [
    [ours0.name, ours0.bytesPerParam.toFixed(3), '1.000x', ours0.encryptMsPer1M.toFixed(0), '1.00x', '0', '0', ours0.maxAbsError.toExponential(2), '0'],
    ...masked.map((m) => [
      `  + secagg masks, ${m.sites} sites${m.dropped ? ` (${m.dropped} dropped)` : ''}`,
      m.bytesPerParam.toFixed(3),
      `${(m.bytesPerParam / ours0.bytesPerParam).toFixed(3)}x`,
      m.encryptMsPer1M.toFixed(0),
      `${(m.encryptMsPer1M / ours0.encryptMsPer1M).toFixed(2)}x`,
      m.maskMsPer1M.toFixed(0),
      m.unmaskMsPer1M.toFixed(0),
      m.maxAbsError.toExponential(2),
      String(m.setupBytesPerSite),
    ]),
  ];
  const mWidths = mHeader.map((h, i) => Math.max(h.length, ...mCells.map((c) => c[i].length)));
  const mLine = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(mWidths[i]) : x.padStart(mWidths[i]))).join('  ');
  console.log(mLine(mHeader));
  for (const c of mCells) console.log(mLine(c));

  // Capacity table: ratios against the unpacked row of the same run.
  const capRows = [capUnpacked, capPacked, capPackedOnes];
  console.log('');
  console.log(`Capacity: one masked round of ${SITES} sites (no drops), ${CP} parameters, deltas U[-1.2,1.2] clipped to B = 1;`);
  console.log(
    `Σn = ${full} (${weights.filter((w) => w > weights[weights.length - 1]).length} sites of ${weights[0]}, the rest ${weights[weights.length - 1]}) unless n = 1; noise budget ${budget255} bits after 255 additions (packed)`,
  );
  const cHeader = ['scheme', 'Σn', 'up B/param', 'vs unpacked', 'down B/param', 'vs unpacked', 'max abs err (xB)', 'bound (xB)', 'budget bits'];
  const cCells = capRows.map((r) => [
    r.name,
    String(r.totalSamples),
    r.upBytesPerParam.toFixed(3),
    `${(r.upBytesPerParam / capUnpacked.upBytesPerParam).toFixed(3)}x`,
    r.downBytesPerParam.toFixed(3),
    `${(r.downBytesPerParam / capUnpacked.downBytesPerParam).toFixed(3)}x`,
    r.maxAbsError.toExponential(2),
    r.errorBound.toExponential(2),
    String(r.noiseBudgetBits),
  ]);
  const cWidths = cHeader.map((h, i) => Math.max(h.length, ...cCells.map((c) => c[i].length)));
  const cLine = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(cWidths[i]) : x.padStart(cWidths[i]))).join('  ');
  console.log(cLine(cHeader));
  for (const c of cCells) console.log(cLine(c));

  if (json) {
    const [ours, packed, def] = rows;
    const worst = capPackedOnes.maxAbsError > capPacked.maxAbsError ? capPackedOnes : capPacked;
    const bySites = (f: (m: MaskedRow) => number): Record<string, number> => Object.fromEntries(masked.map((m) => [String(m.sites), f(m)]));
    console.log(
      JSON.stringify({
        unmaskedBytesPerParam: ours.bytesPerParam,
        defaultBytesPerParam: def.bytesPerParam,
        encryptMsPer1M: ours.encryptMsPer1M,
        defaultEncryptMsPer1M: def.encryptMsPer1M,
        unmaskedMaxAbsError: ours.maxAbsError,
        addMsPer1M: ours.addMsPer1M,
        defaultAddMsPer1M: def.addMsPer1M,
        defaultMaxAbsError: def.maxAbsError,
        unmaskedEncryptMsPerMParams: unmaskedEncryptMsPer1M,
        maskedEncryptMsPerMParams: bySites((m) => m.encryptMsPer1M),
        maskedBytesPerParam: bySites((m) => m.bytesPerParam),
        setupBytesPerSite: bySites((m) => m.setupBytesPerSite),
        maskMsPerMParams: bySites((m) => m.maskMsPer1M),
        unmaskMsPerMParams: bySites((m) => m.unmaskMsPer1M),
        maskedMaxAbsError: bySites((m) => m.maxAbsError),
        params: P,
        packedUnmaskedBytesPerParam: packed.bytesPerParam,
        packedEncryptMsPer1M: packed.encryptMsPer1M,
        packedAddMsPer1M: packed.addMsPer1M,
        packedUnmaskedMaxAbsError: packed.maxAbsError,
        bytesPerParam: capPacked.upBytesPerParam,
        downlinkBytesPerParam: capPacked.downBytesPerParam,
        maxAbsError: worst.maxAbsError,
        errorBound: worst.errorBound,
        clipBound: 1,
        maxSites: SITES,
        maxSamplesPerRound: capPacked.totalSamples,
        lanes: lanesOf(PACKED_HE_PARAMS),
        precisionBits: PACKED_HE_PARAMS.precisionBits,
        plainModulusBits: PACKED_HE_PARAMS.plainModulusBits,
        capacityParams: CP,
        noiseBudgetBitsAfterSum: Math.min(capPacked.noiseBudgetBits, capPackedOnes.noiseBudgetBits),
        noiseBudgetBitsAfter255: budget255,
        unpacked: {
          bytesPerParam: capUnpacked.upBytesPerParam,
          downlinkBytesPerParam: capUnpacked.downBytesPerParam,
          maxAbsError: capUnpacked.maxAbsError,
          noiseBudgetBitsAfterSum: capUnpacked.noiseBudgetBits,
          precisionBits: DEFAULT_HE_PARAMS.precisionBits,
          plainModulusBits: DEFAULT_HE_PARAMS.plainModulusBits,
        },
        vsUnpacked: {
          bytesPerParam: capPacked.upBytesPerParam / capUnpacked.upBytesPerParam,
          downlinkBytesPerParam: capPacked.downBytesPerParam / capUnpacked.downBytesPerParam,
        },
      }),
    );
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:he failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
