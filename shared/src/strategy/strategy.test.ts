/**
 * Strategies against naive plaintext references written here from the papers' update rules (plain
 * number arrays, Math.sign, no shared code with the implementations), bit for bit over several
 * rounds; FedAvg end to end through the quantised layout; state serialisation; determinism.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StrategySchema, type StrategyConfig } from '@twinfed/protocols';
import { averageFromCentred, quantizeToZt } from '../he/quantize.js';
import { mulberry32 } from '../model/prng.js';
import { centreZt } from '../secagg/zt.js';
import { NO_STATE_HASH, StrategyError, parseState, serialiseState, stateHash, strategyFor, type Strategy, type StrategyState } from './index.js';

const f32 = Math.fround;
const bits = (a: Float32Array | Float64Array | Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

function randomVec(rand: () => number, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

const cfg = (c: unknown): StrategyConfig => StrategySchema.parse(c);

// ----------------------------------------------------------------- references

type Ref = (w: number[], mean: number[]) => number[];

/** FedAvg / FedProx (McMahan et al. 2017): w + mean, rounded to float32. */
const refFedAvg = (): Ref => (w, d) => w.map((x, i) => f32(x + d[i]));

/** FedAvgM (Hsu et al. 2019): v = βv + Δ; w = w + ηv; v0 = 0. */
function refFedAvgM(eta: number, beta: number): Ref {
  let v: number[] | null = null;
  return (w, d) => {
    v = (v ?? d.map(() => 0)).map((vi, i) => beta * vi + d[i]);
    return w.map((x, i) => f32(x + eta * v![i]));
  };
}

/** Reddi et al. 2021, Algorithm 2; m0 = 0, v0 = τ². */
function refFedOpt(kind: 'adam' | 'yogi' | 'adagrad', eta: number, b1: number, b2: number, tau: number): Ref {
  let m: number[] | null = null;
  let v: number[] | null = null;
  return (w, d) => {
    m = (m ?? d.map(() => 0)).map((mi, i) => b1 * mi + (1 - b1) * d[i]);
    v = (v ?? d.map(() => tau * tau)).map((vi, i) => {
      const g2 = d[i] * d[i];
      if (kind === 'adam') return b2 * vi + (1 - b2) * g2;
      if (kind === 'yogi') return vi - (1 - b2) * g2 * Math.sign(vi - g2);
      return vi + g2;
    });
    return w.map((x, i) => f32(x + (eta * m![i]) / (Math.sqrt(v![i]) + tau)));
  };
}

const CASES: { config: StrategyConfig; ref: () => Ref }[] = [
  { config: cfg({ name: 'fedavg' }), ref: refFedAvg },
  { config: cfg({ name: 'fedprox', mu: 0.1 }), ref: refFedAvg },
  { config: cfg({ name: 'fedavgm', serverLearningRate: 0.7, momentum: 0.9 }), ref: () => refFedAvgM(0.7, 0.9) },
  { config: cfg({ name: 'fedadam', serverLearningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 }), ref: () => refFedOpt('adam', 0.05, 0.9, 0.99, 1e-3) },
  { config: cfg({ name: 'fedyogi', serverLearningRate: 0.05, beta1: 0.8, beta2: 0.95, tau: 1e-2 }), ref: () => refFedOpt('yogi', 0.05, 0.8, 0.95, 1e-2) },
  { config: cfg({ name: 'fedadagrad', serverLearningRate: 0.1, beta1: 0.5, tau: 1e-3 }), ref: () => refFedOpt('adagrad', 0.1, 0.5, 0, 1e-3) },
  // defaults from the schema
  { config: cfg({ name: 'fedadam' }), ref: () => refFedOpt('adam', 0.01, 0.9, 0.99, 1e-3) },
  { config: cfg({ name: 'fedadagrad' }), ref: () => refFedOpt('adagrad', 0.01, 0, 0, 1e-3) },
];

/** Runs `rounds` aggregates through the strategy (state serialised and parsed between rounds, as a site does) and the reference. */
function runBoth(s: Strategy, ref: Ref, seed: number, n: number, rounds: number) {
  const rand = mulberry32(seed);
  let w = randomVec(rand, n, 1);
  let refW = Array.from(w);
  let state: StrategyState | null = null;
  for (let r = 0; r < rounds; r++) {
    // some rounds with tiny, zero and repeated values to reach the sign(0) and v ≈ Δ² branches
    const mean = randomVec(rand, n, r % 3 === 2 ? 1e-3 : 0.1);
    mean[0] = 0;
    if (n > 2) mean[1] = r % 2 ? 0.03125 : -0.03125;
    const out = s.apply(w, mean, state);
    refW = ref(refW, Array.from(mean));
    assert.equal(bits(out.weights), bits(Float32Array.from(refW)), `${s.name} round ${r}: weights differ from the reference`);
    state = out.state === null ? null : parseState(serialiseState(out.state));
    w = out.weights;
  }
  return { w, state };
}

test('every strategy matches its plaintext reference bit for bit over 6 rounds', () => {
  for (const [k, c] of CASES.entries()) {
    const s = strategyFor(c.config);
    assert.equal(s.name, c.config.name);
    const { state } = runBoth(s, c.ref(), 1000 + k, 37, 6);
    if (s.stateful) {
      assert.ok(state, `${s.name} keeps state`);
      assert.equal(state.strategy, s.name);
      assert.equal(state.steps, 6);
    } else {
      assert.equal(state, null);
    }
  }
});

test('FedYogi: sign(v − Δ²) = 0 leaves v alone; v stays non-negative', () => {
  const s = strategyFor(cfg({ name: 'fedyogi', tau: 0.5 }));
  // v0 = τ² = 0.25 = Δ² for Δ = 0.5: v unchanged
  const out = s.apply(new Float32Array([0, 0]), new Float32Array([0.5, -3]), null);
  assert.equal(out.state!.vectors.v[0], 0.25);
  assert.ok(out.state!.vectors.v[1] > 0.25);
  let state = out.state;
  for (let r = 0; r < 20; r++) state = s.apply(new Float32Array(2), new Float32Array([r % 2 ? 5 : 0, 0]), state).state;
  for (const x of state!.vectors.v) assert.ok(x >= 0);
});

test('the registry: absent = FedAvg; all linear, combined by the encrypted sum; FedProx asks for the proximal term', () => {
  assert.equal(strategyFor(undefined).name, 'fedavg');
  for (const c of CASES) {
    const s = strategyFor(c.config);
    assert.equal(s.linear, true);
    assert.equal(s.combine, 'encrypted-sum');
    assert.ok(s.paper.length > 10);
  }
  assert.deepEqual(strategyFor(cfg({ name: 'fedprox', mu: 0.25 })).localObjective(), { proximalMu: 0.25 });
  assert.deepEqual(strategyFor(cfg({ name: 'fedadam' })).localObjective(), {});
  assert.throws(() => StrategySchema.parse({ name: 'median' }), /TWF_E_STRATEGY_NOT_LINEAR/);
  assert.throws(() => strategyFor({ name: 'krum' } as unknown as StrategyConfig), /TWF_E_STRATEGY_NOT_LINEAR/);
});

test('encode: the pseudo-gradient local − global with weight n (float32 difference)', () => {
  const rand = mulberry32(7);
  const g = randomVec(rand, 50, 1);
  const l = randomVec(rand, 50, 1);
  for (const c of CASES) {
    const e = strategyFor(c.config).encode(g, l, 42);
    assert.equal(e.weight, 42);
    assert.equal(bits(e.vector), bits(Float32Array.from(g, (x, i) => f32(l[i] - x))));
  }
  assert.throws(() => strategyFor(undefined).encode(g, l.subarray(1), 1), StrategyError);
  assert.throws(() => strategyFor(undefined).encode(g, l, 0), StrategyError);
});

/**
 * "The same quantised layout": each site k clips its Δ_k elementwise to ±B, multiplies by
 * n_k·2^p/B and rounds (Math.round) to an integer q_k; the sum Σ_k q_k is taken in Z_t (with masks
 * that cancel, as secure aggregation adds) and lifted to the centred range (−t/2, t/2], which is
 * the plain integer sum because |Σ q_k| ≤ Σ n_k·2^p < t/2; the mean is that sum times
 * 1/((2^p/B)·Σ n_k) in float64, rounded to float32. The reference does the same integer
 * arithmetic with BigInt and no modulus.
 */
test('FedAvg through the quantised layout (3 sites, masks that cancel mod t) equals the integer reference bit for bit', () => {
  const t = (1n << 42n) - 11n; // any odd t with room: the sum never wraps
  const tn = Number(t);
  const B = 0.05;
  const p = 20;
  const ns = [17, 230, 5];
  const N = ns.reduce((a, b) => a + b, 0);
  const n = 300;
  const rand = mulberry32(99);
  const global = randomVec(rand, n, 1);
  const locals = ns.map(() => {
    const l = randomVec(rand, n, 1);
    for (let i = 0; i < n; i++) l[i] = global[i] + (rand() * 2 - 1) * 0.08; // some beyond ±B: clipped
    return l;
  });
  const s = strategyFor(undefined);
  const enc = locals.map((l, k) => s.encode(global, l, ns[k]));
  const qs = enc.map((e) => quantizeToZt(e.vector, e.weight, B, p, t).values);
  // masks r1, r2, −(r1 + r2) mod t
  const r1 = Float64Array.from({ length: n }, () => Math.floor(rand() * tn));
  const r2 = Float64Array.from({ length: n }, () => Math.floor(rand() * tn));
  const r3 = Float64Array.from({ length: n }, (_, i) => (2 * tn - r1[i] - r2[i]) % tn);
  const masks = [r1, r2, r3];
  const sum = new Float64Array(n);
  for (let k = 0; k < 3; k++) for (let i = 0; i < n; i++) sum[i] = (((sum[i] + qs[k][i]) % tn) + masks[k][i]) % tn;
  const mean = averageFromCentred(centreZt(sum, t), N, B, p, t);
  const applied = s.apply(global, mean, null);

  // reference: BigInt integer sums, then the same float64 scaling and one float32 rounding each step
  const S = 2 ** p / B;
  const ref = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let acc = 0n;
    for (let k = 0; k < 3; k++) {
      const d = f32(locals[k][i] - global[i]);
      const c = d > B ? B : d < -B ? -B : d;
      acc += BigInt(Math.round(c * (ns[k] * S)));
    }
    const m = f32(Number(acc) * (1 / (S * N)));
    assert.equal(m, mean[i], `mean[${i}]`);
    ref[i] = f32(global[i] + m);
  }
  assert.equal(bits(applied.weights), bits(ref));
  assert.equal(applied.state, null);
  // and the same bits as the float32 `base[i] += avg[i]` this replaced
  const old = Float32Array.from(global);
  for (let i = 0; i < n; i++) old[i] += mean[i];
  assert.equal(bits(applied.weights), bits(old));
});

test('state: serialise/parse round trip, the hash, and corrupt or foreign bytes refused', () => {
  const s = strategyFor(cfg({ name: 'fedadam' }));
  const rand = mulberry32(3);
  let st = s.apply(randomVec(rand, 10, 1), randomVec(rand, 10, 0.1), null).state!;
  st = s.apply(randomVec(rand, 10, 1), randomVec(rand, 10, 0.1), st).state!;
  const bytes = serialiseState(st);
  const back = parseState(bytes);
  assert.equal(back.strategy, 'fedadam');
  assert.equal(back.steps, 2);
  assert.deepEqual(Object.keys(back.vectors).sort(), ['m', 'v']);
  assert.equal(bits(back.vectors.m), bits(st.vectors.m));
  assert.equal(bits(back.vectors.v), bits(st.vectors.v));
  assert.deepEqual(serialiseState(back), bytes);
  assert.match(stateHash(st), /^[0-9a-f]{64}$/);
  assert.equal(stateHash(back), stateHash(st));
  assert.equal(stateHash(null), NO_STATE_HASH);
  // a copy with one bit flipped hashes differently
  const flipped = Float64Array.from(st.vectors.v);
  flipped[3] = -flipped[3];
  assert.notEqual(stateHash({ ...st, vectors: { ...st.vectors, v: flipped } }), stateHash(st));
  assert.throws(() => parseState(bytes.subarray(0, bytes.length - 1)), /TWF_E_STRATEGY_STATE/);
  assert.throws(() => parseState(Uint8Array.from([...bytes, 0])), /trailing/);
  const v2 = Uint8Array.from(bytes);
  v2[4] = 2;
  assert.throws(() => parseState(v2), /format version/);
  const nan = Uint8Array.from(bytes);
  new DataView(nan.buffer).setFloat64(nan.length - 8, NaN, true);
  assert.throws(() => parseState(nan), /not finite/);
  // a state of another strategy, or of another length, is refused by apply
  assert.throws(() => strategyFor(cfg({ name: 'fedyogi' })).apply(new Float32Array(10), new Float32Array(10), back), /TWF_E_STRATEGY_STATE/);
  assert.throws(() => s.apply(new Float32Array(11), new Float32Array(11), back), /TWF_E_STRATEGY_STATE/);
  assert.throws(() => s.apply(new Float32Array(10), new Float32Array(9), back), /TWF_E_UPDATE_SHAPE/);
  assert.throws(() => s.apply(new Float32Array(2), Float32Array.of(0, NaN), null), /TWF_E_UPDATE_SHAPE/);
});

test('determinism: the same inputs give the same bytes, inputs are not mutated', () => {
  for (const c of CASES) {
    const s = strategyFor(c.config);
    const rand = mulberry32(11);
    const w = randomVec(rand, 64, 1);
    const mean = randomVec(rand, 64, 0.1);
    const first = s.apply(w, mean, null);
    const wCopy = bits(w);
    const stateCopy = first.state ? bits(serialiseState(first.state)) : null;
    const a = s.apply(first.weights, mean, first.state);
    const b = strategyFor(c.config).apply(Float32Array.from(first.weights), Float32Array.from(mean), first.state && parseState(serialiseState(first.state)));
    assert.equal(bits(a.weights), bits(b.weights));
    assert.equal(stateHash(a.state), stateHash(b.state));
    assert.equal(bits(w), wCopy);
    if (first.state) assert.equal(bits(serialiseState(first.state)), stateCopy, `${s.name}: apply mutated the state it was given`);
  }
});

test('FedAdam moves the model differently from FedAvg on the same mean', () => {
  const rand = mulberry32(5);
  const w = randomVec(rand, 16, 1);
  const mean = randomVec(rand, 16, 0.01);
  assert.notEqual(bits(strategyFor(cfg({ name: 'fedadam' })).apply(w, mean, null).weights), bits(strategyFor(undefined).apply(w, mean, null).weights));
});
