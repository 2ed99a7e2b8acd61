import { eq } from 'drizzle-orm';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '@twinfed/protocols';
import type { AuditLog } from '@twinfed/shared/audit/index';
import { extractSlices, readNifti } from '@twinfed/shared/data/index';
import type { SiteDb } from './db/index.js';
import { segSlices } from './db/schema.js';

export interface ImportRow {
  patientId: string;
  status: 'imported' | 'unchanged' | 'skipped' | 'failed';
  split?: 'train' | 'val';
  nSlices?: number;
  reason?: string;
}

/**
 * Imports PET studies laid out as `DIR/PATIENT/PET_image.nii.gz` + `PET_mask.nii.gz`
 * (the layout of the IBSI STS set). Each patient is one transaction: a bad
 * file is reported and skipped, never half-stored. Re-importing an unchanged
 * patient (same file digests, same slice size) does nothing.
 */
export async function importStsFolder(db: SiteDb, audit: AuditLog, dir: string, opts: { patients?: string[]; val?: string[]; size: number }): Promise<ImportRow[]> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`TWF_E_IMPORT: ${dir} is not a folder`);
  const all = readdirSync(dir).filter((d) => statSync(join(dir, d)).isDirectory()).sort();
  const wanted = opts.patients ?? all;
  const rows: ImportRow[] = [];
  wanted.forEach((patientId, i) => {
    const pdir = join(dir, patientId);
    const split: 'train' | 'val' = opts.val ? (opts.val.includes(patientId) ? 'val' : 'train') : i % 4 === 3 ? 'val' : 'train';
    const imgPath = join(pdir, 'PET_image.nii.gz');
    const maskPath = join(pdir, 'PET_mask.nii.gz');
    if (!existsSync(imgPath) || !existsSync(maskPath)) {
      rows.push({ patientId, status: 'skipped', reason: `no PET_image.nii.gz + PET_mask.nii.gz in ${pdir}` });
      return;
    }
    try {
      const imgBytes = new Uint8Array(readFileSync(imgPath));
      const maskBytes = new Uint8Array(readFileSync(maskPath));
      const digest = sha256Hex(sha256Hex(imgBytes) + sha256Hex(maskBytes));
      const prev = db.select({ d: segSlices.sourceDigest, size: segSlices.size, split: segSlices.split, n: segSlices.nSlices }).from(segSlices).where(eq(segSlices.patientId, patientId)).get();
      if (prev && prev.d === digest && prev.size === opts.size && prev.split === split) {
        rows.push({ patientId, status: 'unchanged', split, nSlices: prev.n });
        return;
      }
      const image = readNifti(imgBytes);
      const mask = readNifti(maskBytes);
      const s = extractSlices(image, mask, { size: opts.size });
      if (s.n === 0) {
        rows.push({ patientId, status: 'skipped', reason: 'the mask marks no tumour voxel' });
        return;
      }
      const values = {
        patientId, split, modality: 'PET', sourceDigest: digest, nSlices: s.n, size: s.size,
        images: Buffer.from(s.images.buffer, s.images.byteOffset, s.images.byteLength),
        masks: Buffer.from(s.masks.buffer, s.masks.byteOffset, s.masks.byteLength),
        pixelSpacingMm: image.spacingMm[0], sliceThicknessMm: image.spacingMm[2], importedAtMs: Date.now(),
      };
      db.transaction((tx) => {
        tx.insert(segSlices).values(values).onConflictDoUpdate({ target: segSlices.patientId, set: values }).run();
        audit.append({ actor: audit.ownerId, action: 'data.imported', digest, sizeBytes: imgBytes.length + maskBytes.length, detail: `${patientId} PET ${s.n} slices (${split})` });
      });
      rows.push({ patientId, status: 'imported', split, nSlices: s.n });
    } catch (e) {
      rows.push({ patientId, status: 'failed', reason: (e as Error).message });
    }
  });
  return rows;
}
