/**
 * File edge for the STS soft-tissue-sarcoma PET data (IBSI / TCIA Soft-tissue-Sarcoma
 * collection, Vallières et al. 2015): one folder per patient holding
 * PET_image.nii.gz (SUV) and PET_mask.nii.gz (GTV). The only file I/O in data/.
 */
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { readNifti, type NiftiVolume } from './nifti.js';

export interface StsCase {
  id: string;
  image: NiftiVolume;
  mask: NiftiVolume;
}

/** Loads one patient folder, e.g. shared/data/sts/nifti/STS_001. */
export async function loadStsCase(dir: string, modality: 'PET' | 'MR_T1' = 'PET'): Promise<StsCase> {
  const [img, msk] = await Promise.all([readFile(path.join(dir, `${modality}_image.nii.gz`)), readFile(path.join(dir, `${modality}_mask.nii.gz`))]);
  return { id: path.basename(dir), image: readNifti(img), mask: readNifti(msk) };
}

/** Patient folder names (STS_001, ...) under a root, sorted. */
export async function listStsCases(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory() && /^STS_\d+$/.test(e.name))
    .map((e) => e.name)
    .sort();
}
