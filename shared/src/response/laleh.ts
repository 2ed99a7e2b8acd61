import type { LalehCohort } from '../twin/laleh.js';
import type { ResponsePatient } from './features.js';

/** Patients of a parsed Laleh table (twin/laleh.ts) in the response core's shape. */
export function responsePatientsFromLaleh(c: LalehCohort): ResponsePatient[] {
  return c.map((p) => ({ id: p.id, days: [...p.days], diametersMm: [...(p.diametersMm ?? [])], arm: p.arm ?? null }));
}
