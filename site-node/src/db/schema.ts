import { blob, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';
export { auditLog, auditOwner } from '@twinfed/shared/audit/table';

/** Key/value state of the site (outgoing sequence number, last coordinator sequence seen). */
export const meta = sqliteTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});

/** Studies announced by the coordinator, with the manifest exactly as received. */
export const studies = sqliteTable('studies', {
  studyId: text('study_id').primaryKey(),
  manifestJson: text('manifest_json').notNull(),
  manifestHash: text('manifest_hash').notNull(),
  /** pending (awaiting the officer) | approved | joined | completed | stopped (by the lead) | excluded (evicted, removed, revoked) | withdrawn (by this site's officer) | legacy (announced under protocol 1.x) | stranded (further behind than the coordinator's catch-up window: it cannot rebuild the model and declines the rounds) */
  status: text('status').notNull(),
  announcedAtMs: integer('announced_at_ms').notNull(),
  /** Manifest hash a decline was last sent for (one decline per manifest). */
  declinedHash: text('declined_hash'),
});

/** The privacy officer's approvals, bound to a manifest hash. */
export const approvals = sqliteTable(
  'approvals',
  {
    studyId: text('study_id').notNull(),
    manifestHash: text('manifest_hash').notNull(),
    officer: text('officer').notNull(),
    approvedAtMs: integer('approved_at_ms').notNull(),
    note: text('note'),
    /** Set when the officer withdrew this approval (the site leaves after the round it is in). */
    withdrawnAtMs: integer('withdrawn_at_ms'),
    withdrawnBy: text('withdrawn_by'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.manifestHash] })],
);

/**
 * The study's SEAL secret key of one epoch (never leaves the site except sealed, by a dealer, to the
 * roster's other sites). A new epoch after each roster change or exclusion.
 */
export const studyKeys = sqliteTable(
  'study_keys',
  {
    studyId: text('study_id').notNull(),
    epoch: integer('epoch').notNull(),
    secretKey: blob('secret_key', { mode: 'buffer' }).notNull(),
    dealerSiteId: text('dealer_site_id').notNull(),
    heParamsDigest: text('he_params_digest').notNull(),
    /** SHA-256 commitment the dealer signed; what a recipient checked its opened key against. */
    keyCommitment: text('key_commitment').notNull(),
    manifestHash: text('manifest_hash').notNull(),
    receivedAtMs: integer('received_at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.epoch] })],
);

/** Global model after applying `version` aggregates (version 0 = seeded initialisation). */
export const models = sqliteTable(
  'models',
  {
    studyId: text('study_id').notNull(),
    version: integer('version').notNull(),
    weights: blob('weights', { mode: 'buffer' }).notNull(),
    digest: text('digest').notNull(),
    createdAtMs: integer('created_at_ms').notNull(),
    meanDice: real('mean_dice'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.version] })],
);

/**
 * This site's part in one round, kept so that every step survives a restart and is repeated with the
 * same bytes: the trained update (plaintext, never leaves the site), the round's secure-aggregation
 * secrets (wiped once the round is over), the shares received from the others, the ciphertexts,
 * and what was signed and revealed (a site never reveals both shares of one site).
 */
export const roundWork = sqliteTable(
  'round_work',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    /** trained | setup-sent | uploaded | signed | revealed | applied | failed */
    state: text('state').notNull(),
    keyEpoch: integer('key_epoch').notNull(),
    baseVersion: integer('base_version').notNull(),
    participantsJson: text('participants_json').notNull(),
    threshold: integer('threshold').notNull(),
    /** Float32 little-endian weight change (weights after training − base), never sent anywhere. */
    delta: blob('delta', { mode: 'buffer' }),
    nSamples: integer('n_samples').notNull(),
    length: integer('length').notNull(),
    trainLoss: real('train_loss'),
    trainMs: real('train_ms'),
    /** Round secrets: X25519 mask key pair and the self-mask seed (null once the round is over). */
    sSk: blob('s_sk', { mode: 'buffer' }),
    sPk: blob('s_pk', { mode: 'buffer' }),
    b: blob('b', { mode: 'buffer' }),
    /** The mask.setup body sent (resent identically after a reconnect). */
    setupJson: text('setup_json'),
    /** The key set as received (mask.peers entries without boxes). */
    keySetJson: text('key_set_json'),
    /** Shares received from the key set: { siteId: { b, s } } base64 (null once the round is over). */
    sharesJson: text('shares_json'),
    /** Framed ciphertexts of the masked update (protocols packFrames). */
    ciphertexts: blob('ciphertexts', { mode: 'buffer' }),
    encryptMs: real('encrypt_ms'),
    uploadBytes: integer('upload_bytes'),
    uploadedAtMs: integer('uploaded_at_ms'),
    /** The survivor set this site signed: { keySet, survivors }. */
    signedJson: text('signed_json'),
    /** Whose shares were revealed: { b: [...], s: [...] }. */
    revealedJson: text('revealed_json'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round] })],
);

/**
 * Server-optimiser state of a stateful strategy (FedAvgM's momentum, FedAdam/FedYogi/FedAdagrad's
 * moments; shared/src/strategy) after applying aggregate `version`. Every site computes it with the
 * same float64 JavaScript, so `stateHash` (SHA-256 of `state`) is the same at every site.
 */
export const strategyState = sqliteTable(
  'strategy_state',
  {
    studyId: text('study_id').notNull(),
    version: integer('version').notNull(),
    /** Serialised float64 vectors (shared/src/strategy serialiseState). */
    state: blob('state', { mode: 'buffer' }).notNull(),
    stateHash: text('state_hash').notNull(),
    createdAtMs: integer('created_at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.version] })],
);

/**
 * The site's privacy ledger: one row per round in which one of its datasets was used under
 * differential privacy. RDP composes additively over rounds and studies (Mironov, CSF 2017), so
 * the dataset's spend is the sum of `rdp` over its rows, converted to epsilon at the site's delta.
 */
export const dpLedger = sqliteTable(
  'dp_ledger',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    /** Which data the round used: 'segmentation:<modality>' or 'response:twin-measurements'. */
    datasetKey: text('dataset_key').notNull(),
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    /** 'patient' (DP-SGD at this site) or 'site' (distributed discrete Gaussian). */
    level: text('level').notNull(),
    /** Compositions of the round (DP-SGD steps; 1 for site level). */
    steps: integer('steps').notNull(),
    samplingRate: real('sampling_rate').notNull(),
    noiseMultiplier: real('noise_multiplier').notNull(),
    /** RDP of the round at the accountant's orders (float64 little-endian, shared/src/dp/accountant RDP_ORDERS). */
    rdp: blob('rdp', { mode: 'buffer' }).notNull(),
    /** Epsilon of this study on this dataset after the round, at the manifest's delta. */
    epsilonStudy: real('epsilon_study').notNull(),
    /** Epsilon of all studies on this dataset after the round, at `deltaDataset` (the site's delta). */
    epsilonDataset: real('epsilon_dataset').notNull(),
    deltaDataset: real('delta_dataset').notNull(),
    recordedAtMs: integer('recorded_at_ms').notNull(),
  },
  (t) => [uniqueIndex('dp_ledger_study_round').on(t.studyId, t.round, t.datasetKey)],
);

/** The coordinator's signed receipts of this site's accepted messages (statement twinfed.receipt.v1; checked by `twinfed audit compare`). */
export const receipts = sqliteTable('receipts', {
  seq: integer('seq').primaryKey(),
  msgType: text('msg_type').notNull(),
  studyId: text('study_id'),
  round: integer('round'),
  digest: text('digest').notNull(),
  entryId: integer('entry_id').notNull(),
  entryHash: text('entry_hash').notNull(),
  coordinatorId: text('coordinator_id').notNull(),
  signature: text('signature').notNull(),
  receivedAtMs: integer('received_at_ms').notNull(),
});

/** Signed checkpoints of the coordinator's audit chain head (statement twinfed.checkpoint.v1). */
export const auditCheckpoints = sqliteTable('audit_checkpoints', {
  entryId: integer('entry_id').primaryKey(),
  entryHash: text('entry_hash').notNull(),
  coordinatorId: text('coordinator_id').notNull(),
  tsMs: integer('ts_ms').notNull(),
  signature: text('signature').notNull(),
  receivedAtMs: integer('received_at_ms').notNull(),
});

/** Segmentation training data: fixed-size slices of one patient's image + mask (never leaves the site). */
export const segSlices = sqliteTable('seg_slices', {
  patientId: text('patient_id').primaryKey(),
  /** train | val: split by patient, so no patient is in both. */
  split: text('split').notNull(),
  modality: text('modality').notNull(),
  sourceDigest: text('source_digest').notNull(),
  nSlices: integer('n_slices').notNull(),
  /** Slice edge in pixels. */
  size: integer('size').notNull(),
  /** Float32 normalised intensities, n*size*size. */
  images: blob('images', { mode: 'buffer' }).notNull(),
  /** Uint8 labels, n*size*size. */
  masks: blob('masks', { mode: 'buffer' }).notNull(),
  pixelSpacingMm: real('pixel_spacing_mm').notNull(),
  sliceThicknessMm: real('slice_thickness_mm').notNull(),
  importedAtMs: integer('imported_at_ms').notNull(),
});

// ---------------------------------------------------------------- digital twin
// Layers of the twin (BRIEF.md): acquisition (series, masks), measurements,
// treatments, the calibrated mechanistic model (fits) and its predictions.

/** Every imported file (or DICOM series), by content digest: re-importing the same bytes is a no-op. */
export const importedFiles = sqliteTable('imported_files', {
  digest: text('digest').primaryKey(),
  path: text('path').notNull(),
  kind: text('kind').notNull(),
  patientId: text('patient_id'),
  importedAtMs: integer('imported_at_ms').notNull(),
});

export const twinPatients = sqliteTable('twin_patients', {
  patientId: text('patient_id').primaryKey(),
  /** Study or cohort the patient came from (e.g. the CSV's study arm file). */
  cohort: text('cohort'),
  createdAtMs: integer('created_at_ms').notNull(),
});

/** A time point of a patient; `day` counts days from the patient's treatment start (negative = before). */
export const timepoints = sqliteTable(
  'timepoints',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    patientId: text('patient_id').notNull(),
    day: real('day').notNull(),
    /** Acquisition date when known (ISO 8601). */
    date: text('date'),
  },
  (t) => [uniqueIndex('timepoints_patient_day').on(t.patientId, t.day)],
);

export const imagingSeries = sqliteTable('imaging_series', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  patientId: text('patient_id').notNull(),
  timepointId: integer('timepoint_id').notNull(),
  modality: text('modality').notNull(),
  /** Sequence or reconstruction (e.g. T1, PET SUV). */
  sequence: text('sequence'),
  seriesUid: text('series_uid'),
  format: text('format').notNull(),
  dimsJson: text('dims_json').notNull(),
  spacingMmJson: text('spacing_mm_json').notNull(),
  /** Direction cosines, row-major 3x3. */
  orientationJson: text('orientation_json').notNull(),
  fileDigest: text('file_digest').notNull().unique(),
  path: text('path').notNull(),
});

export const lesions = sqliteTable(
  'lesions',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    patientId: text('patient_id').notNull(),
    name: text('name').notNull(),
  },
  (t) => [uniqueIndex('lesions_patient_name').on(t.patientId, t.name)],
);

export const masks = sqliteTable('masks', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  seriesId: integer('series_id').notNull(),
  lesionId: integer('lesion_id').notNull(),
  /** manual (NIfTI/NRRD label), rtstruct, or model (segmentation output). */
  origin: text('origin').notNull(),
  voxels: integer('voxels').notNull(),
  volumeMm3: real('volume_mm3').notNull(),
  longestDiameterMm: real('longest_diameter_mm').notNull(),
  fileDigest: text('file_digest').notNull(),
});

/**
 * IBSI radiomics features of an imported mask (docs/radiomics.md), one row per feature, computed at import with
 * the settings named in `settings` (see site-node/src/import/radiomics.ts). Never leaves the site.
 */
export const radiomicsFeatures = sqliteTable(
  'radiomics_features',
  {
    maskId: integer('mask_id').notNull(),
    patientId: text('patient_id').notNull(),
    lesionId: integer('lesion_id').notNull(),
    /** Name of the extraction settings, e.g. pyradiomics-default or pyradiomics-default-pet. */
    settings: text('settings').notNull(),
    /** IBSI tag, e.g. morph_volume, cm_joint_max_3D_avg. */
    tag: text('tag').notNull(),
    /** Value in the feature's IBSI unit (mm, mm^2, mm^3, intensity units, grey levels); null when IBSI leaves it undefined for this ROI. */
    value: real('value'),
  },
  (t) => [primaryKey({ columns: [t.maskId, t.settings, t.tag] })],
);

/** Tumour burden at a time point: from a mask, or from a clinical measurement file. */
export const measurements = sqliteTable(
  'measurements',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    patientId: text('patient_id').notNull(),
    lesionId: integer('lesion_id').notNull(),
    timepointId: integer('timepoint_id').notNull(),
    day: real('day').notNull(),
    volumeMm3: real('volume_mm3').notNull(),
    longestDiameterMm: real('longest_diameter_mm'),
    /** mask | csv */
    source: text('source').notNull(),
    sourceDigest: text('source_digest').notNull(),
  },
  (t) => [uniqueIndex('measurements_unique').on(t.patientId, t.lesionId, t.day, t.source)],
);

export const treatments = sqliteTable('treatments', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  patientId: text('patient_id').notNull(),
  /** radiotherapy | systemic */
  kind: text('kind').notNull(),
  startDay: real('start_day').notNull(),
  stopDay: real('stop_day'),
  fractions: integer('fractions'),
  doseGyPerFraction: real('dose_gy_per_fraction'),
  /** Systemic therapy: agent class or trial arm (e.g. immunotherapy, chemotherapy). */
  agentClass: text('agent_class'),
  sourceDigest: text('source_digest').notNull(),
});

/** A calibration of one growth model to one patient's measurements. */
export const twinFits = sqliteTable('twin_fits', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  patientId: text('patient_id').notNull(),
  model: text('model').notNull(),
  /** wls (least squares) or map (with the population prior). */
  method: text('method').notNull(),
  paramsJson: text('params_json').notNull(),
  covarianceJson: text('covariance_json'),
  /** Residual standard deviation, in the fit's (normalised) units. */
  sigma: real('sigma').notNull(),
  aic: real('aic').notNull(),
  bic: real('bic').notNull(),
  nPoints: integer('n_points').notNull(),
  /** Days of the measurements used. */
  dataDaysJson: text('data_days_json').notNull(),
  /** The fit the twin currently uses for this patient (lowest AIC of the latest refit). */
  selected: integer('selected', { mode: 'boolean' }).notNull(),
  fittedAtMs: integer('fitted_at_ms').notNull(),
});

/** What a fit predicted for a day; scored once a measurement for that day arrives. */
export const forecasts = sqliteTable('forecasts', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  fitId: integer('fit_id').notNull(),
  patientId: text('patient_id').notNull(),
  day: real('day').notNull(),
  predictedMm3: real('predicted_mm3').notNull(),
  lower90Mm3: real('lower90_mm3').notNull(),
  upper90Mm3: real('upper90_mm3').notNull(),
  observedMm3: real('observed_mm3'),
  /** |observed - predicted| / patient's max observed volume (normalised, as in Ghaffari Laleh 2022). */
  absErrorNorm: real('abs_error_norm'),
  inside90: integer('inside90', { mode: 'boolean' }),
  createdAtMs: integer('created_at_ms').notNull(),
  scoredAtMs: integer('scored_at_ms'),
});
