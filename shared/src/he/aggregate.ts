/**
 * Coordinator side: holds no key, only checks and adds ciphertexts.
 * BFV addition is coefficient-wise addition mod q, exact and commutative, so
 * the aggregate does not depend on arrival order, and subtracting a
 * ciphertext undoes its addition bit for bit. Plaintext sums wrap mod t
 * without extra noise, because SEAL encrypts round(q·m/t) rather than
 * floor(q/t)·m (Kim, Polyakov & Zucca 2021, "Revisiting homomorphic encryption
 * schemes for finite fields", ePrint 2021/204).
 */
import type { HeContext } from './context.js';
import { HeError } from './errors.js';
import { loadCiphertext, saveCiphertext } from './ciphertext-io.js';
import { sealErrorMessage, type CipherText } from './seal-loader.js';

/** Throws HeError TWF_E_BAD_CIPHERTEXT unless `bytes` is a valid ciphertext for ctx. */
export function validateCiphertext(ctx: HeContext, bytes: Uint8Array): void {
  loadCiphertext(ctx, bytes).delete();
}

/** Serialised acc, with `fn` applied to it as a running sum (the one SEAL add/sub path, CiphertextSum). */
function withSum(ctx: HeContext, acc: Uint8Array, fn: (s: CiphertextSum) => void): Uint8Array {
  const s = CiphertextSum.start(ctx, acc);
  try {
    fn(s);
    return s.save();
  } finally {
    s.delete();
  }
}

/**
 * acc + ct. With acc null, returns ct validated and re-serialised in full
 * (the seed expanded), i.e. the starting aggregate.
 */
export function addCiphertexts(ctx: HeContext, acc: Uint8Array | null, ct: Uint8Array): Uint8Array {
  if (acc === null) return withSum(ctx, ct, () => undefined);
  return withSum(ctx, acc, (s) => s.add(ct));
}

/** acc - ct: removes a chunk that was added before (e.g. an abandoned partial upload). */
export function subtractCiphertext(ctx: HeContext, acc: Uint8Array, ct: Uint8Array): Uint8Array {
  return withSum(ctx, acc, (s) => s.sub(ct));
}

/**
 * A running sum kept as a live SEAL ciphertext: each chunk is loaded (every check of
 * loadCiphertext) and added in place, with no reload and re-serialisation of the sum per chunk
 * (that round trip was ~70 % of addCiphertexts: 1.4 ms against 0.26 ms for a load and an add of a
 * packed ciphertext here). The result is bit for bit addCiphertexts' (the same SEAL add, mod q).
 * It holds wasm memory until delete(): 2·N·k words (128 KiB at N = 4096, k = 2).
 */
export class CiphertextSum {
  private constructor(
    private readonly ctx: HeContext,
    private ct: CipherText | null,
  ) {}

  /** A sum holding one ciphertext (validated: throws TWF_E_BAD_CIPHERTEXT). */
  static start(ctx: HeContext, bytes: Uint8Array): CiphertextSum {
    return new CiphertextSum(ctx, loadCiphertext(ctx, bytes));
  }

  private combine(bytes: Uint8Array, op: 'add' | 'sub'): void {
    const a = this.live();
    const b = loadCiphertext(this.ctx, bytes);
    try {
      if (op === 'add') this.ctx.evaluator.add(a, b, a);
      else this.ctx.evaluator.sub(a, b, a);
    } catch (e) {
      throw new HeError('TWF_E_BAD_CIPHERTEXT', `SEAL ${op} failed: ${sealErrorMessage(e)}`, { cause: e });
    } finally {
      b.delete();
    }
  }

  /** sum += ct; a ciphertext that fails validation leaves the sum unchanged. */
  add(bytes: Uint8Array): void {
    this.combine(bytes, 'add');
  }

  /** sum -= ct (undoes an earlier add of the same bytes). */
  sub(bytes: Uint8Array): void {
    this.combine(bytes, 'sub');
  }

  /** The sum serialised in the envelope (what addCiphertexts returns). */
  save(): Uint8Array {
    return saveCiphertext(this.ctx, this.live());
  }

  /** Frees the wasm memory; the sum is unusable afterwards. */
  delete(): void {
    this.ct?.delete();
    this.ct = null;
  }

  private live(): CipherText {
    if (!this.ct) throw new Error('CiphertextSum used after delete()');
    return this.ct;
  }
}
