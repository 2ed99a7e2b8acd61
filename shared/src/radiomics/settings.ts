import { z } from 'zod';
import { RadiomicsError } from './errors.js';

/**
 * Settings of one radiomics extraction (IBSI reference manual, arXiv:1612.07003, chapter 2: the image
 * processing steps and their parameters; IBSI configurations in Zwanenburg et al., Radiology 2020, table 2).
 */
export interface RadiomicsSettings {
  /**
   * Resampling onto an isotropic or anisotropic grid before anything else (IBSI 2.4, trilinear interpolation,
   * grid centres aligned). `null` or absent: features are computed on the original grid.
   */
  resampling?: {
    spacingMm: [number, number, number];
    /** Mask voxels whose interpolated value is >= this fraction stay in the ROI (IBSI 2.4; default 0.5). */
    partialVolumeThreshold?: number;
    /** Round resampled intensities to integers (IBSI 2.4, for CT Hounsfield units; default false). */
    roundIntensities?: boolean;
  } | null;
  /**
   * Re-segmentation range (IBSI 2.5), in image intensity units: intensity-ROI voxels outside
   * [minIntensity, maxIntensity] are removed. Either bound may be omitted. The morphological ROI is unchanged.
   */
  resegmentation?: { minIntensity?: number; maxIntensity?: number; outlierSigma?: number } | null;
  /**
   * Intensity discretisation (IBSI 2.7).
   *  - `none`: intensities are used as grey levels as they are (they must be integers >= 1; the IBSI phantom);
   *  - `fbn`: fixed bin number, `bins` bins between the ROI minimum and maximum;
   *  - `fbs`: fixed bin size, `binWidth` in intensity units; the first bin starts at the lower re-segmentation
   *    bound (or the ROI minimum) when `binOrigin` is `roi-min` (IBSI), or bin edges are whole multiples of the
   *    bin width when `binOrigin` is `zero` (PyRadiomics' convention).
   */
  discretisation: { method: 'none' } | { method: 'fbn'; bins: number } | { method: 'fbs'; binWidth: number; binOrigin?: 'roi-min' | 'zero' };
  /** Neighbour distance of the texture matrices, in voxels (IBSI 3.6; default 1). */
  textureDistance?: number;
  /** NGLDM coarseness parameter a, in grey levels (IBSI 3.11; default 0). */
  ngldmAlpha?: number;
  /** Which texture aggregations to report (default all three). Morphology and intensity families are 3D. */
  dimensions?: ('2D' | '2.5D' | '3D')[];
  /** Which families to compute (default all). */
  families?: Family[];
  /** Moran's I / Geary's C are O(N^2) in the ROI voxel count; above this they are left out with a warning (default 20000). */
  maxVoxelsForPairwise?: number;
}

export const FAMILIES = ['morph', 'loc', 'stat', 'ih', 'ivh', 'texture'] as const;
export type Family = (typeof FAMILIES)[number];

/**
 * Settings like PyRadiomics' default Params.yaml (van Griethuysen et al., Cancer Res 2017): no resampling, no
 * re-segmentation, fixed bin width 25 with bin edges at multiples of the width, 3D texture, distance 1, NGLDM
 * (PyRadiomics' GLDM) alpha 0. The same as fixtures/radiomics/pyradiomics-default.json.
 */
export const PYRADIOMICS_DEFAULT_SETTINGS: RadiomicsSettings = {
  resampling: null,
  resegmentation: null,
  discretisation: { method: 'fbs', binWidth: 25, binOrigin: 'zero' },
  textureDistance: 1,
  ngldmAlpha: 0,
  dimensions: ['3D'],
};

const vec3 = z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]);
export const RadiomicsSettingsSchema = z
  .object({
    resampling: z
      .object({
        spacingMm: vec3,
        partialVolumeThreshold: z.number().gt(0).lte(1).optional(),
        roundIntensities: z.boolean().optional(),
      })
      .strict()
      .nullable()
      .optional(),
    resegmentation: z
      .object({
        minIntensity: z.number().optional(),
        maxIntensity: z.number().optional(),
        outlierSigma: z.number().positive().optional(),
      })
      .strict()
      .nullable()
      .optional(),
    discretisation: z.discriminatedUnion('method', [
      z.object({ method: z.literal('none') }).strict(),
      z.object({ method: z.literal('fbn'), bins: z.number().int().min(1).max(65536) }).strict(),
      z.object({ method: z.literal('fbs'), binWidth: z.number().positive(), binOrigin: z.enum(['roi-min', 'zero']).optional() }).strict(),
    ]),
    textureDistance: z.number().int().min(1).optional(),
    ngldmAlpha: z.number().int().min(0).optional(),
    dimensions: z.array(z.enum(['2D', '2.5D', '3D'])).optional(),
    families: z.array(z.enum(FAMILIES)).optional(),
    maxVoxelsForPairwise: z.number().int().min(0).optional(),
    /** Free text shown nowhere; lets a settings file say where it comes from. */
    description: z.string().optional(),
  })
  .strict();

/** Checks a settings object (e.g. parsed from a JSON file); throws TWF_E_RADIOMICS_SETTINGS naming the bad field. */
export function parseRadiomicsSettings(value: unknown, source = 'settings'): RadiomicsSettings {
  const r = RadiomicsSettingsSchema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new RadiomicsError('TWF_E_RADIOMICS_SETTINGS', `${source}: ${issues}`);
  }
  const s = r.data;
  const rs = s.resegmentation;
  if (rs && rs.minIntensity !== undefined && rs.maxIntensity !== undefined && rs.minIntensity > rs.maxIntensity) {
    throw new RadiomicsError('TWF_E_RADIOMICS_SETTINGS', `${source}: resegmentation.minIntensity ${rs.minIntensity} is above maxIntensity ${rs.maxIntensity}`);
  }
  const { description: _d, ...rest } = s;
  return rest as RadiomicsSettings;
}
