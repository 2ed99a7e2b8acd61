/**
 * SEAL context for one parameter set. Contexts are immutable and cached per
 * parameter digest, so repeated createHeContext() calls in a long-lived
 * server allocate SEAL objects only once.
 */
import { HeError } from './errors.js';
import { layoutVersion } from './lanes.js';
import { checkHeParams, heParamsDigest, plainModulus, type HeParams } from './params.js';
import { loadSeal, sealErrorMessage, type BatchEncoder, type Context, type Evaluator, type SEALLibrary } from './seal-loader.js';

export interface HeContext {
  readonly params: HeParams;
  readonly slotCount: number;
  /** heParamsDigest(params). */
  readonly paramsDigest: string;
  /** Plain modulus t (prime, ≡ 1 mod 2N). */
  readonly plainModulus: bigint;
  /** SEAL handles; shared, never deleted (cached for the process lifetime). */
  readonly seal: SEALLibrary;
  readonly context: Context;
  readonly encoder: BatchEncoder;
  readonly evaluator: Evaluator;
  /** SEAL parms_id of the (only) data level; ciphertexts must carry it. */
  readonly parmsId: readonly bigint[];
  /** Upper bound on a serialised ciphertext body (2 polynomials, uncompressed, plus header slack). */
  readonly maxBodyBytes: number;
  /** The coefficient primes q_j SEAL chose (bit sizes coeffModulusBits), for TWH2 packing (wire.ts). */
  readonly coeffModuli: readonly bigint[];
  /** Envelope version these parameters use: TWH1 (layout 1) or TWH2 (layout 2, `lanes` present). */
  readonly wireVersion: 1 | 2;
}

const cache = new Map<string, Promise<HeContext>>();

export function createHeContext(p: HeParams): Promise<HeContext> {
  checkHeParams(p);
  const params: HeParams = {
    scheme: p.scheme,
    polyModulusDegree: p.polyModulusDegree,
    coeffModulusBits: [...p.coeffModulusBits],
    plainModulusBits: p.plainModulusBits,
    precisionBits: p.precisionBits,
    ...(p.lanes === undefined ? {} : { lanes: p.lanes }),
  };
  const digest = heParamsDigest(params);
  let ctx = cache.get(digest);
  if (!ctx) {
    ctx = build(params, digest);
    cache.set(digest, ctx);
    ctx.catch(() => cache.delete(digest));
  }
  return ctx;
}

async function build(params: HeParams, digest: string): Promise<HeContext> {
  const seal = await loadSeal();
  const N = params.polyModulusDegree;
  const parms = seal.EncryptionParameters(seal.SchemeType.bfv);
  const coeff = seal.CoeffModulus.Create(N, Int32Array.from(params.coeffModulusBits));
  const plain = seal.PlainModulus.Batching(N, params.plainModulusBits);
  let context: Context | undefined;
  try {
    parms.setPolyModulusDegree(N);
    parms.setCoeffModulus(coeff);
    parms.setPlainModulus(plain);
    const t = plain.value;
    const expectedT = plainModulus(params);
    if (t !== expectedT) throw new HeError('TWF_E_HE_PARAMS', `SEAL chose plain modulus ${t}, expected ${expectedT}`);
    context = seal.Context(parms, true, seal.SecurityLevel.tc128);
    if (!context.parametersSet()) throw new HeError('TWF_E_HE_PARAMS', 'SEAL rejected the parameters');
    const encoder = seal.BatchEncoder(context); // throws unless t supports batching
    const evaluator = seal.Evaluator(context);
    const pid = context.firstParmsId;
    const parmsId = Array.from(pid.values);
    pid.delete();
    const k = params.coeffModulusBits.length;
    const coeffModuli = Array.from(parms.coeffModulus);
    coeffModuli.forEach((q, j) => {
      if (q.toString(2).length !== params.coeffModulusBits[j]) throw new HeError('TWF_E_HE_PARAMS', `SEAL chose a ${q.toString(2).length}-bit prime for a ${params.coeffModulusBits[j]}-bit modulus`);
    });
    return {
      params: Object.freeze(params),
      slotCount: encoder.slotCount,
      paramsDigest: digest,
      plainModulus: t,
      seal,
      context,
      encoder,
      evaluator,
      parmsId: Object.freeze(parmsId),
      maxBodyBytes: 2 * N * k * 8 + 4096,
      coeffModuli: Object.freeze(coeffModuli),
      wireVersion: layoutVersion(params),
    };
  } catch (e) {
    context?.delete();
    if (e instanceof HeError) throw e;
    throw new HeError('TWF_E_HE_PARAMS', `SEAL: ${sealErrorMessage(e)}`, { cause: e });
  } finally {
    parms.delete();
    coeff.delete();
    plain.delete();
  }
}
