#!/usr/bin/env node
// node-seal 7 against the installed 6.0.3 (docs/scaling.md, "Node 24"): speed of the operations
// Twinfed uses, and whether ciphertexts, keys and sums cross between the two. node-seal 7 needs
// WebAssembly GC (Node >= 22) and is not a dependency, so unpack it first:
//   (cd /tmp && npm pack node-seal@7.0.0 && tar xzf node-seal-7.0.0.tgz)
//   NODE_SEAL7=/tmp/package node scripts/eval-node-seal7.mjs          (on Node >= 22)
// BFV, N = 4096, one 60-bit prime, 42-bit batching plain modulus (DEFAULT_HE_PARAMS). Timings:
// the best of 30 interleaved batches of 20, so other load on the machine does not decide.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.env.NODE_SEAL7;
if (!dir) throw new Error('set NODE_SEAL7 to the unpacked node-seal 7 package folder (see the header of this script)');
const require = createRequire(new URL('../shared/package.json', import.meta.url));
const N = 4096;
const slots = new BigUint64Array(N).map((_, i) => BigInt((i * 977) % 100000));

async function v6() {
  const mod = require('node-seal/throws_wasm_node_umd.js');
  const seal = await (typeof mod === 'function' ? mod : mod.default)();
  const parms = seal.EncryptionParameters(seal.SchemeType.bfv);
  parms.setPolyModulusDegree(N);
  parms.setCoeffModulus(seal.CoeffModulus.Create(N, Int32Array.from([60])));
  parms.setPlainModulus(seal.PlainModulus.Batching(N, 42));
  const ctx = seal.Context(parms, true, seal.SecurityLevel.tc128);
  const enc = seal.BatchEncoder(ctx);
  const ev = seal.Evaluator(ctx);
  const kg = seal.KeyGenerator(ctx);
  const sk = kg.secretKey();
  const encryptor = seal.Encryptor(ctx, kg.createPublicKey(), sk);
  const none = seal.ComprModeType.none;
  const load = (b) => {
    const c = seal.CipherText();
    c.loadArray(ctx, b);
    return c;
  };
  return {
    name: '6.0.3',
    sk: sk.saveArray(none),
    load,
    encrypt() {
      const pt = enc.encode(slots);
      const s = encryptor.encryptSymmetricSerializable(pt);
      const b = s.saveArray(none);
      s.delete();
      pt.delete();
      return b;
    },
    add(a, b) {
      const x = load(a);
      const y = load(b);
      ev.add(x, y, x);
      const r = x.saveArray(none);
      x.delete();
      y.delete();
      return r;
    },
    decryptWith(skBytes) {
      const k = seal.SecretKey();
      k.loadArray(ctx, skBytes);
      const d = seal.Decryptor(ctx, k);
      return (b) => {
        const c = load(b);
        const pt = d.decrypt(c);
        const v = enc.decodeBigInt(pt, false);
        pt.delete();
        c.delete();
        return v;
      };
    },
  };
}

async function v7() {
  const { default: SEAL } = await import(pathToFileURL(join(dir, 'dist', 'index_throws.js')).href);
  const s = await SEAL();
  const parms = new s.EncryptionParameters(s.SchemeType.bfv);
  parms.setPolyModulusDegree(N);
  parms.setCoeffModulus(s.CoeffModulus.Create(N, Int32Array.from([60])));
  parms.setPlainModulus(s.PlainModulus.Batching(N, 42));
  const ctx = new s.SEALContext(parms, true, s.SecLevelType.tc128);
  const enc = new s.BatchEncoder(ctx);
  const ev = new s.Evaluator(ctx);
  const kg = new s.KeyGenerator(ctx);
  const sk = kg.secretKey();
  const encryptor = new s.Encryptor(ctx, kg.createPublicKey(), sk);
  const none = s.ComprModeType.none;
  const load = (b) => {
    const c = new s.Ciphertext();
    c.loadFromArray(ctx, b);
    return c;
  };
  return {
    name: '7.0.0',
    sk: sk.saveToArray(none),
    load,
    encrypt() {
      const pt = new s.Plaintext();
      enc.encode(slots, pt);
      const ser = encryptor.encryptSymmetricSerializable(pt);
      const b = ser.saveToArray(none);
      ser.delete();
      pt.delete();
      return b;
    },
    add(a, b) {
      const x = load(a);
      const y = load(b);
      ev.add(x, y, x);
      const r = x.saveToArray(none);
      x.delete();
      y.delete();
      return r;
    },
    decryptWith(skBytes) {
      const k = new s.SecretKey();
      k.loadFromArray(ctx, skBytes);
      const d = new s.Decryptor(ctx, k);
      return (b) => {
        const c = load(b);
        const pt = new s.Plaintext();
        d.decrypt(c, pt);
        const v = enc.decodeBigUint64(pt);
        pt.delete();
        c.delete();
        return v;
      };
    },
  };
}

const libs = [await v6(), await v7()];
for (const l of libs) {
  l.ct = l.encrypt();
  l.ct2 = l.encrypt();
  l.sum = l.add(l.ct, l.ct2);
  l.dec = l.decryptWith(l.sk);
}
const doubled = (v) => v.every((x, i) => x === 2n * slots[i]);
const [a, b] = libs;
const checks = {
  '6.0.3 chunks summed by 7.0.0, decrypted by 6.0.3': doubled(a.dec(b.add(a.ct, a.ct2))),
  '7.0.0 chunks summed by 6.0.3, decrypted by 7.0.0': doubled(b.dec(a.add(b.ct, b.ct2))),
  "6.0.3's secret key loaded by 7.0.0 decrypts 6.0.3's sum": doubled(b.decryptWith(a.sk)(a.sum)),
  'the same sum, byte for byte, from either': Buffer.from(a.add(a.ct, a.ct2)).equals(Buffer.from(b.add(a.ct, a.ct2))),
  'ciphertext sizes (seeded, full) equal': a.ct.length === b.ct.length && a.sum.length === b.sum.length,
};
const ops = { encrypt: (l) => l.encrypt(), 'load (validate)': (l) => l.load(l.ct).delete(), 'load+add+save': (l) => l.add(l.sum, l.ct), decrypt: (l) => l.dec(l.sum) };
const best = {};
for (let r = 0; r < 30; r++)
  for (const l of r % 2 ? libs : [...libs].reverse())
    for (const [name, f] of Object.entries(ops)) {
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) f(l);
      const k = `${name} ${l.name}`;
      best[k] = Math.min(best[k] ?? Infinity, (performance.now() - t0) / 20);
    }
console.log(`node ${process.version}; seeded chunk ${a.ct.length} bytes, sum ${a.sum.length} bytes`);
for (const name of Object.keys(ops)) {
  const x = best[`${name} 6.0.3`];
  const y = best[`${name} 7.0.0`];
  console.log(`${name.padEnd(16)} 6.0.3 ${x.toFixed(3)} ms  7.0.0 ${y.toFixed(3)} ms  (7.0.0 / 6.0.3 = ${(y / x).toFixed(2)})`);
}
for (const [k, v] of Object.entries(checks)) console.log(`${v ? 'yes' : 'NO '}  ${k}`);
process.exit(Object.values(checks).every(Boolean) ? 0 : 1);
