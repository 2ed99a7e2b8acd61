import { z } from 'zod';
import { canonicalJson, sha256Hex } from './canonical.js';
import { SiteIdSchema, StudyIdSchema, PartyIdSchema } from './ids.js';

/** Parameters of the additively homomorphic scheme a study uses (see docs/security.md). */
export const HeParamsSchema = z.object({
  scheme: z.literal('bfv-sym-seeded'),
  polyModulusDegree: z.number().int().min(1024).max(32768),
  coeffModulusBits: z.array(z.number().int().min(20).max(60)).min(1).max(8),
  plainModulusBits: z.number().int().min(17).max(60),
  precisionBits: z.number().int().min(8).max(40),
  /**
   * Quantised values per plaintext slot (shared/src/he/lanes.ts). Absent: one, TWH1 ciphertexts (every
   * study before it existed; its digest unchanged). Present: that many, TWH2 ciphertexts with 60-bit
   * words (docs/protocol.md, "Ciphertexts").
   */
  lanes: z.number().int().min(1).max(4).optional(),
});
export type HeParamsWire = z.infer<typeof HeParamsSchema>;

export const ModelConfigSchema = z.object({
  arch: z.literal('unet2d'),
  inChannels: z.number().int().min(1).max(8),
  nClasses: z.number().int().min(2).max(16),
  base: z.number().int().min(2).max(64),
  depth: z.number().int().min(1).max(5),
  /** Input slice edge length in pixels (square). */
  size: z.number().int().min(16).max(512),
  /** Seed of the deterministic initialisation every site reproduces. */
  initSeed: z.number().int().min(0),
});

export const TrainingConfigSchema = z.object({
  epochsPerRound: z.number().min(0.1).max(100),
  batchSize: z.number().int().min(1).max(1024),
  learningRate: z.number().positive().max(1),
  /** Elementwise clip bound B of a weight update before quantisation. */
  clipBound: z.number().positive().max(100),
  seed: z.number().int().min(0),
  /**
   * Most training samples (FedAvg weight n) one site may declare in one round. The coordinator
   * refuses a larger n, or one above the counts the site joined with; with the roster size it
   * bounds the round's total so the encrypted sum can never overflow (checked at start).
   */
  maxSamplesPerSite: z.number().int().min(1).max(10_000_000).default(10_000),
});

export const DataCriteriaSchema = z.object({
  modality: z.enum(['PET', 'CT', 'MR']),
  /** Label names in mask order; index 0 is background. */
  labels: z.array(z.string().min(1)).min(2),
  minTrainSlices: z.number().int().min(1).default(1),
});

/**
 * Treatment-response model (task 'response'): softmax regression over the features of a patient's
 * first three measurements (shared/src/response/features.ts, feature set 'first3-v1') and a one-hot
 * of the arm over `arms`. Three classes: response, stable, progression (RECIST-style, see
 * shared/src/response/labels.ts).
 */
export const ResponseModelConfigSchema = z.object({
  arch: z.literal('logreg'),
  features: z.literal('first3-v1'),
  nClasses: z.literal(3),
  /** Arm vocabulary of the one-hot columns, in column order (unknown arms → all zeros). */
  arms: z.array(z.string().min(1).max(200)).max(64),
  /** L2 penalty on the weights (not the biases). */
  l2: z.number().min(0).max(10),
  initSeed: z.number().int().min(0),
});

/** Growth models of the twin core (shared/src/twin/models.ts) a population prior can be built for. */
export const GROWTH_MODEL_NAMES = ['exponential', 'logistic', 'gompertz', 'generalGompertz', 'classicBertalanffy', 'generalBertalanffy'] as const;

/**
 * Federated population prior of growth parameters (task 'twin-prior'): no model is trained; each
 * site fits its patients' growth models and uploads the additive sufficient statistics of the fits
 * in fixed point (shared/src/twin/prior-codec.ts). Each patient's parameter vector is clipped to the
 * model's parameter box, its RSS to maxRssPerPatient and its residual dof to maxDofPerPatient, so
 * one patient's contribution is bounded.
 */
export const TwinPriorModelConfigSchema = z.object({
  arch: z.literal('growth-prior'),
  /** Models whose prior is built, in vector order. */
  models: z
    .array(z.enum(GROWTH_MODEL_NAMES))
    .min(1)
    .max(GROWTH_MODEL_NAMES.length)
    .refine((a) => new Set(a).size === a.length, 'a model is listed twice'),
  /** nMax: most patients one site may put into the statistics (sets the fixed-point scale). */
  maxPatientsPerSite: z.number().int().min(1).max(100_000),
  maxRssPerPatient: z.number().positive().max(100).default(1),
  maxDofPerPatient: z.number().int().min(1).max(1000).default(50),
});

/** Any model a study can train; discriminated by `arch`. */
export const AnyModelConfigSchema = z.discriminatedUnion('arch', [ModelConfigSchema, ResponseModelConfigSchema, TwinPriorModelConfigSchema]);
export type AnyModelConfig = z.infer<typeof AnyModelConfigSchema>;

export const ResponseDataCriteriaSchema = z.object({
  /** Patients come from the site's twin tables (measurements + treatments), e.g. after `twinfed site import`. */
  source: z.literal('twin-measurements'),
  /** Patients with fewer usable measurements are left out (3 for features, the last for the label). */
  minMeasurements: z.number().int().min(4).max(100),
  /** Percent of patients (by salted hash of the id) used for training; the rest are held out. */
  trainPercent: z.number().int().min(1).max(99),
  splitSalt: z.string().min(1).max(64),
  minTrainPatients: z.number().int().min(1),
});

/**
 * Fewest patients a site may put into a population prior: a site with fewer declines the round
 * (TWF_E_NO_DATA), so no site's contribution is the statistics of one or two patients.
 */
export const MIN_PRIOR_PATIENTS = 5;

export const TwinPriorDataCriteriaSchema = z.object({
  /** Patients come from the site's twin tables (measurements), e.g. after `twinfed site import`. */
  source: z.literal('twin-measurements'),
  /** Patients with fewer measurements of their primary lesion are not in the statistics. */
  minMeasurements: z.number().int().min(3).max(100),
  /** The minimum-patient rule: a site with fewer such patients does not contribute (at least MIN_PRIOR_PATIENTS). */
  minPatients: z.number().int().min(MIN_PRIOR_PATIENTS).max(100_000),
});

/**
 * Aggregation strategies that cannot run under additive encryption: each needs the individual
 * updates (order statistics, pairwise distances), which the coordinator never sees and the sites
 * never exchange. A spec naming one is refused with TWF_E_STRATEGY_NOT_LINEAR (docs/strategies.md).
 */
export const NON_LINEAR_STRATEGIES = ['trimmed-mean', 'median', 'krum', 'multi-krum', 'bulyan', 'geometric-median'] as const;

const serverLearningRate = z.number().positive().max(10);
const beta = z.number().min(0).max(0.9999);
/** Adaptivity / numerical floor tau of FedOpt's server optimisers (Reddi et al., ICLR 2021, Alg. 2). */
const tau = z.number().positive().max(1);

/**
 * How the round's aggregate becomes the next global model; the officer approves it with its
 * parameters. Every strategy here is linear in the site updates, so the coordinator only sums
 * ciphertexts; server-side optimisers run identically at every site after decryption.
 * Absent = FedAvg (McMahan et al., AISTATS 2017).
 */
export const StrategySchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('fedavg') }).strict(),
  /** FedProx (Li et al., MLSys 2020): local objective + (mu/2)·||w − w_global||². */
  z.object({ name: z.literal('fedprox'), mu: z.number().min(0).max(100) }).strict(),
  /** FedAvgM (Hsu, Qi & Brown 2019): server momentum on the averaged update. */
  z.object({ name: z.literal('fedavgm'), serverLearningRate: serverLearningRate.default(1), momentum: beta.default(0.9) }).strict(),
  /** FedAdam (Reddi et al., ICLR 2021). */
  z.object({ name: z.literal('fedadam'), serverLearningRate: serverLearningRate.default(0.01), beta1: beta.default(0.9), beta2: beta.default(0.99), tau: tau.default(1e-3) }).strict(),
  /** FedYogi (Reddi et al., ICLR 2021; Zaheer et al., NeurIPS 2018). */
  z.object({ name: z.literal('fedyogi'), serverLearningRate: serverLearningRate.default(0.01), beta1: beta.default(0.9), beta2: beta.default(0.99), tau: tau.default(1e-3) }).strict(),
  /** FedAdagrad (Reddi et al., ICLR 2021). */
  z.object({ name: z.literal('fedadagrad'), serverLearningRate: serverLearningRate.default(0.01), beta1: beta.default(0), tau: tau.default(1e-3) }).strict(),
  z
    .object({ name: z.enum(NON_LINEAR_STRATEGIES) })
    .passthrough()
    .superRefine((s, ctx) => {
      ctx.addIssue({
        code: 'custom',
        path: ['name'],
        message: `strategy '${s.name}' is not linear in the site updates (TWF_E_STRATEGY_NOT_LINEAR): under additive encryption the coordinator only ever holds the encrypted sum, so order statistics and distances between individual updates cannot be computed; use fedavg, fedprox, fedavgm, fedadam, fedyogi or fedadagrad (docs/strategies.md)`,
      });
    })
    .transform((s): never => s as never),
]);
export type StrategyConfig = z.infer<typeof StrategySchema>;
export type StrategyName = StrategyConfig['name'];

const dpBudget = {
  /** Epsilon this study may spend on one site's dataset over all its rounds (with `delta`). */
  epsilon: z.number().positive().max(100),
  /** Delta of the (epsilon, delta) guarantee; well below 1/patients (1e-5 is usual). */
  delta: z.number().positive().max(1e-3),
  /**
   * Noise multiplier sigma: Gaussian noise of standard deviation sigma·clipNorm. When a spec leaves
   * it out, the coordinator derives the smallest sigma meeting the budget at creation, so the
   * approved manifest always names it.
   */
  noiseMultiplier: z.number().min(0.3).max(1000).optional(),
};

/**
 * Patient-level DP-SGD at each site (Abadi et al., CCS 2016): every local step samples patients
 * with probability `samplingRate` (Poisson), clips the summed gradient of each sampled patient
 * (all of that patient's slices or rows) to L2 norm `clipNorm`, adds N(0, (sigma·clipNorm)²) to
 * the sum. Steps per round = max(1, round(epochsPerRound / samplingRate)). The site's RDP
 * accountant composes over steps, rounds and studies; the guarantee holds against the
 * coordinator, the other sites and whoever uses the model.
 */
export const PatientDpSchema = z
  .object({
    level: z.literal('patient'),
    ...dpBudget,
    /** C: L2 bound of one patient's gradient contribution per step. */
    clipNorm: z.number().positive().max(1000),
    /** q: probability that a patient takes part in one local step. */
    samplingRate: z.number().gt(0).max(1),
  })
  .strict();

/**
 * Site-level DP with the distributed discrete Gaussian (Kairouz, Liu & Steinke, ICML 2021): each
 * site clips its whole update to L2 norm `clipNorm`, contributes with weight 1, and adds integer
 * noise of variance (sigma·clipNorm·scale)²/minSites in the quantised domain, so the sum of at
 * least minSites contributions carries noise of standard deviation ≥ sigma·clipNorm. One
 * composition per round. For large consortia; at 3 sites it drowns the signal (docs/privacy.md).
 */
export const SiteDpSchema = z
  .object({
    level: z.literal('site'),
    ...dpBudget,
    /** C: L2 bound of a site's whole update. */
    clipNorm: z.number().positive().max(1000),
  })
  .strict();

/** Differential privacy of a study; absent = none (training.clipBound still bounds each element). */
export const DpSchema = z.discriminatedUnion('level', [PatientDpSchema, SiteDpSchema]);
export type DpConfig = z.infer<typeof DpSchema>;

/** Fewest sites whose updates may form an aggregate: with 2, each learns the other's update from it. */
export const MIN_CONTRIBUTORS = 3;

/** Most ciphertexts one update.chunk message may carry (about 4 MiB at N = 4096 without packing). */
export const MAX_CIPHERTEXTS_PER_CHUNK = 64;

/**
 * The ciphertexts chunk `index` of an update carries: [first, first + n) of `ciphertexts` in all,
 * `perChunk` to a message (the manifest's ciphertextsPerChunk, 1 when absent). With one per chunk
 * the body is the ciphertext itself; with more it is packFrames of them (messages.ts).
 */
export function chunkCiphertextRange(index: number, ciphertexts: number, perChunk = 1): { first: number; n: number } {
  const first = index * perChunk;
  return { first, n: Math.max(0, Math.min(perChunk, ciphertexts - first)) };
}

/** update.chunk messages an update of `ciphertexts` ciphertexts takes. */
export function chunkCount(ciphertexts: number, perChunk = 1): number {
  return Math.ceil(ciphertexts / perChunk);
}

/**
 * The fields every task's spec shares. `strict`: the spec a lead writes, where an unknown key (a
 * typo such as `minSite`) is refused rather than silently dropped; the draft and manifest the
 * coordinator builds from it keep the tolerant nested objects.
 */
const studyCommon = (strict: boolean) => ({
  title: z.string().min(1).max(200),
  training: strict ? TrainingConfigSchema.strict() : TrainingConfigSchema,
  /** Rounds that must close (aborted or failed rounds do not count). */
  rounds: z.number().int().min(1).max(1000),
  /** Quorum: fewest contributors of a round, at least 3 (TWF_E_TOO_FEW_CONTRIBUTORS), and at least the secure-aggregation threshold of the roster. */
  minSites: z.number().int().min(MIN_CONTRIBUTORS, `minSites must be at least ${MIN_CONTRIBUTORS} (TWF_E_TOO_FEW_CONTRIBUTORS)`).max(255),
  /** Seconds after a round opens by which sites must have trained and sent their mask keys; with quorum the round goes on without the rest. */
  roundDeadlineS: z
    .number()
    .positive()
    .max(7 * 24 * 3600),
  encryption: (strict ? HeParamsSchema.strict() : HeParamsSchema).optional(),
  /**
   * Ciphertexts per update.chunk message (absent = 1; chunkCiphertextRange). Each message costs the
   * coordinator a signature check, an audit entry, a receipt and a share of a commit whatever it
   * carries, so a large model uploads faster in fewer, larger messages (docs/scaling.md).
   */
  ciphertextsPerChunk: z.number().int().min(1).max(MAX_CIPHERTEXTS_PER_CHUNK).optional(),
  /** Aggregation strategy; absent = FedAvg. */
  strategy: StrategySchema.optional(),
  /** Differential privacy; absent = none. */
  dp: DpSchema.optional(),
});

const segmentationShape = (strict: boolean) => ({
  ...studyCommon(strict),
  task: z.literal('segmentation'),
  model: strict ? ModelConfigSchema.strict() : ModelConfigSchema,
  data: strict ? DataCriteriaSchema.strict() : DataCriteriaSchema,
});
const responseShape = (strict: boolean) => ({
  ...studyCommon(strict),
  task: z.literal('response'),
  model: strict ? ResponseModelConfigSchema.strict() : ResponseModelConfigSchema,
  data: strict ? ResponseDataCriteriaSchema.strict() : ResponseDataCriteriaSchema,
});

const twinPriorShape = (strict: boolean) => ({
  ...studyCommon(strict),
  task: z.literal('twin-prior'),
  model: strict ? TwinPriorModelConfigSchema.strict() : TwinPriorModelConfigSchema,
  data: strict ? TwinPriorDataCriteriaSchema.strict() : TwinPriorDataCriteriaSchema,
});

/** A segmentation spec as a lead writes it: unknown keys are refused at every level. */
export const SegmentationSpecSchema = z.object(segmentationShape(true)).strict();
/** A response spec as a lead writes it: unknown keys are refused at every level. */
export const ResponseSpecSchema = z.object(responseShape(true)).strict();
/** A population-prior spec as a lead writes it: unknown keys are refused at every level. */
export const TwinPriorSpecSchema = z.object(twinPriorShape(true)).strict();
/** The tolerant forms the coordinator's drafts and manifests extend. */
const SegmentationBaseSchema = z.object(segmentationShape(false));
const ResponseBaseSchema = z.object(responseShape(false));
const TwinPriorBaseSchema = z.object(twinPriorShape(false));

/** What a lead asks for (REST body of POST /api/studies); discriminated by `task`. */
export const StudySpecSchema = z.discriminatedUnion('task', [SegmentationSpecSchema, ResponseSpecSchema, TwinPriorSpecSchema]);
/** A study spec as a lead writes it (defaults may be left out). */
export type StudySpec = z.input<typeof StudySpecSchema>;
export type SegmentationSpec = z.input<typeof SegmentationSpecSchema>;
export type ResponseSpec = z.input<typeof ResponseSpecSchema>;
export type TwinPriorSpec = z.input<typeof TwinPriorSpecSchema>;

const b64Key32 = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'expected a 32-byte key in base64');

/** One participating site as the officers approve it: its id, name and the public keys its messages, key handouts and mask keys are checked against. */
export const RosterEntrySchema = z.object({
  siteId: SiteIdSchema,
  siteName: z.string().min(1).max(200),
  /** Ed25519 (RFC 8032) key the site signs with; its fingerprint is what officers compare out of band. */
  ed25519PublicKey: b64Key32,
  /** X25519 (RFC 7748) key sealed study keys and mask-key shares are encrypted to. */
  x25519PublicKey: b64Key32,
});
export type RosterEntry = z.infer<typeof RosterEntrySchema>;

/** Secure aggregation of the study: pairwise + self masks inside the HE plaintexts (Bonawitz et al., CCS 2017), t-of-n shared. */
export const SECURE_AGGREGATION = 'double-mask-v1' as const;

const draftExtra = {
  studyId: StudyIdSchema,
  encryption: HeParamsSchema,
  coordinatorId: PartyIdSchema,
  createdAt: z.string().max(40),
  /** Parameters in every update, from the model config: what leaves each site per round, and the only length the coordinator accepts. */
  updateLength: z.number().int().min(1).max(100_000_000),
  secureAggregation: z.literal(SECURE_AGGREGATION),
};
const rosterExtra = {
  /** 1 when the lead starts the study; +1 for every roster change (each needs new approvals). */
  manifestVersion: z.number().int().min(1),
  /** The sites that take part: nobody else can join, receive the study key or contribute. */
  participants: z.array(RosterEntrySchema).min(MIN_CONTRIBUTORS).max(255),
  /** Order in which sites act as key dealer (the first connected one deals; a missing dealer is replaced by the next). */
  keyDealers: z.array(SiteIdSchema).min(1).max(255),
};

/** A created study before the lead starts it: no roster yet, never shown to officers. */
export const StudyDraftSchema = z.discriminatedUnion('task', [SegmentationBaseSchema.extend(draftExtra), ResponseBaseSchema.extend(draftExtra), TwinPriorBaseSchema.extend(draftExtra)]);
export type StudyDraft = z.infer<typeof StudyDraftSchema>;

/**
 * The manifest a privacy officer approves; its hash binds the approval. It includes the roster:
 * who takes part, with which keys, and who deals the study key.
 */
export const StudyManifestSchema = z
  .discriminatedUnion('task', [
    SegmentationBaseSchema.extend({ ...draftExtra, ...rosterExtra }),
    ResponseBaseSchema.extend({ ...draftExtra, ...rosterExtra }),
    TwinPriorBaseSchema.extend({ ...draftExtra, ...rosterExtra }),
  ])
  .superRefine((m, ctx) => {
    const ids = m.participants.map((p) => p.siteId);
    if (new Set(ids).size !== ids.length) ctx.addIssue({ code: 'custom', path: ['participants'], message: 'a site is listed twice' });
    for (const d of m.keyDealers) if (!ids.includes(d)) ctx.addIssue({ code: 'custom', path: ['keyDealers'], message: `key dealer ${d} is not a participant` });
    if (new Set(m.keyDealers).size !== m.keyDealers.length) ctx.addIssue({ code: 'custom', path: ['keyDealers'], message: 'a key dealer is listed twice' });
    if (m.minSites > ids.length) ctx.addIssue({ code: 'custom', path: ['minSites'], message: `minSites ${m.minSites} exceeds the ${ids.length} participants` });
  });
export type StudyManifest = z.infer<typeof StudyManifestSchema>;
export type SegmentationManifest = Extract<StudyManifest, { task: 'segmentation' }>;
export type ResponseManifest = Extract<StudyManifest, { task: 'response' }>;
export type TwinPriorManifest = Extract<StudyManifest, { task: 'twin-prior' }>;

/** SHA-256 of the canonical JSON of a manifest: what an approval is bound to. */
export function manifestHash(m: StudyManifest): string {
  return sha256Hex(canonicalJson(m));
}

/**
 * Secure-aggregation threshold t for a round of n participants: a strict majority, never fewer
 * than 3 (Bonawitz et al. 2017 take t > n/2 against an active server). Shares of each site's mask
 * secrets are t-of-n; a round needs t sites to unmask.
 */
export function secaggThresholdFor(n: number): number {
  return Math.max(MIN_CONTRIBUTORS, Math.floor(n / 2) + 1);
}

/** Fewest contributors a round of this manifest needs: minSites, and never fewer than 3. */
export function quorumOf(m: Pick<StudyManifest, 'minSites'>): number {
  return Math.max(MIN_CONTRIBUTORS, m.minSites);
}
