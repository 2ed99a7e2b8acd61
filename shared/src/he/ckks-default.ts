/**
 * For comparison in the bench only: the configuration well-known FL
 * frameworks ship for encrypted aggregation (e.g. TenSEAL/NVFlare examples):
 * CKKS (Cheon, Kim, Kim & Song 2017, "Homomorphic Encryption for Arithmetic of
 * Approximate Numbers", ASIACRYPT) with N = 8192, coefficient moduli
 * {60, 40, 60}, scale 2^40, public-key encryption, N/2 = 4096 values per
 * ciphertext, saved with node-seal's default compression (zstd).
 * Not used by the protocol.
 */
import { loadSeal, type SEALLibrary } from './seal-loader.js';
import type { CipherText } from './seal-loader.js';

export interface CkksDefault {
  readonly slotCount: number;
  /** Encrypt values (zero-padded) into ceil(len/slotCount) serialised ciphertexts. */
  encrypt(values: Float64Array): Uint8Array[];
  /** acc + ct, both serialised. */
  add(acc: Uint8Array, ct: Uint8Array): Uint8Array;
  /** Decrypt and decode the first `length` values. */
  decrypt(cts: Uint8Array[], length: number): Float64Array;
  /** Free all SEAL objects. */
  dispose(): void;
}

export async function createCkksDefault(): Promise<CkksDefault> {
  const seal: SEALLibrary = await loadSeal();
  const N = 8192;
  const scale = 2 ** 40;
  const parms = seal.EncryptionParameters(seal.SchemeType.ckks);
  const coeff = seal.CoeffModulus.Create(N, Int32Array.from([60, 40, 60]));
  parms.setPolyModulusDegree(N);
  parms.setCoeffModulus(coeff);
  const context = seal.Context(parms, true, seal.SecurityLevel.tc128);
  parms.delete();
  coeff.delete();
  const keygen = seal.KeyGenerator(context);
  const sk = keygen.secretKey();
  const pk = keygen.createPublicKey();
  const encoder = seal.CKKSEncoder(context);
  const encryptor = seal.Encryptor(context, pk);
  const decryptor = seal.Decryptor(context, sk);
  const evaluator = seal.Evaluator(context);
  const slotCount = encoder.slotCount;

  const load = (bytes: Uint8Array): CipherText => {
    const ct = seal.CipherText();
    ct.loadArray(context, bytes);
    return ct;
  };

  return {
    slotCount,
    encrypt(values) {
      const out: Uint8Array[] = [];
      for (let off = 0; off < values.length; off += slotCount) {
        const chunk = new Float64Array(slotCount);
        chunk.set(values.subarray(off, Math.min(values.length, off + slotCount)));
        const pt = encoder.encode(chunk, scale) as ReturnType<typeof seal.PlainText>;
        const ct = encryptor.encrypt(pt) as CipherText;
        out.push(ct.saveArray());
        ct.delete();
        pt.delete();
      }
      return out;
    },
    add(acc, ct) {
      const a = load(acc);
      const b = load(ct);
      evaluator.add(a, b, a);
      const out = a.saveArray();
      a.delete();
      b.delete();
      return out;
    },
    decrypt(cts, length) {
      const out = new Float64Array(length);
      cts.forEach((bytes, i) => {
        const ct = load(bytes);
        const pt = decryptor.decrypt(ct) as ReturnType<typeof seal.PlainText>;
        const vals = encoder.decode(pt);
        const off = i * slotCount;
        out.set(vals.subarray(0, Math.min(slotCount, length - off)), off);
        pt.delete();
        ct.delete();
      });
      return out;
    },
    dispose() {
      for (const o of [evaluator, decryptor, encryptor, encoder, pk, sk, keygen, context]) o.delete();
    },
  };
}
