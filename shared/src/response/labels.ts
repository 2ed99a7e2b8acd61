/**
 * RECIST-style response category of a patient's last measurement, on the longest diameter of the
 * target lesion (Eisenhauer et al., "New response evaluation criteria in solid tumours: revised
 * RECIST guideline (version 1.1)", Eur J Cancer 45:228–247, 2009, §4.3.1), simplified to one lesion
 * and without RECIST's additional 5 mm absolute-increase condition for progression:
 *   progression (PD) if last ≥ 1.2 · nadir and last > nadir, nadir = smallest diameter seen up to
 *                    and including the last measurement (baseline included);
 *   response  (CR/PR) if last ≤ 0.7 · baseline (≥ 30 % below the first measurement);
 *   stable    (SD) otherwise.
 * Progression is checked first, as in RECIST (a lesion that regrew 20 % from its nadir is PD even
 * if it is still 30 % below baseline).
 */

export const RESPONSE_CLASSES = ['response', 'stable', 'progression'] as const;
export type ResponseClass = (typeof RESPONSE_CLASSES)[number];
/** Class index in RESPONSE_CLASSES order: 0 response, 1 stable, 2 progression. */
export type ClassIndex = 0 | 1 | 2;

export const RECIST_RESPONSE_FRACTION = 0.3;
export const RECIST_PROGRESSION_FRACTION = 0.2;

/** Label from a series of longest diameters (mm) in time order; needs ≥ 1 value. */
export function recistLabel(diametersMm: readonly number[]): ClassIndex {
  if (diametersMm.length === 0) throw new Error('recistLabel: no measurements (give the diameters in time order)');
  const baselineMm = diametersMm[0];
  const lastMm = diametersMm[diametersMm.length - 1];
  const nadirMm = Math.min(...diametersMm);
  if (lastMm > nadirMm && lastMm >= (1 + RECIST_PROGRESSION_FRACTION) * nadirMm) return 2;
  if (lastMm <= (1 - RECIST_RESPONSE_FRACTION) * baselineMm) return 0;
  return 1;
}
