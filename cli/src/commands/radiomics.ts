import { readFileSync } from 'node:fs';
import { readImageFile } from '@twinfed/shared/imaging/index';
import { extractRadiomics, familyOfTag, parseRadiomicsSettings, PYRADIOMICS_DEFAULT_SETTINGS, RadiomicsError, type RadiomicsResult, type RadiomicsSettings } from '@twinfed/shared/radiomics/index';

function readBytes(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new RadiomicsError('TWF_E_RADIOMICS_FILE', `cannot read the ${what} ${path}: ${(e as Error).message}`);
  }
}

/** Reads a settings JSON file (format in docs/radiomics.md); without one, PyRadiomics-like defaults. */
export function loadRadiomicsSettings(path?: string): RadiomicsSettings {
  if (!path) return PYRADIOMICS_DEFAULT_SETTINGS;
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(readBytes(path, 'settings file')).toString('utf8'));
  } catch (e) {
    if (e instanceof RadiomicsError) throw e;
    throw new RadiomicsError('TWF_E_RADIOMICS_FILE', `the settings file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parseRadiomicsSettings(json, path);
}

/**
 * `twinfed radiomics extract`: IBSI features of the ROI of a mask file on an image file (NIfTI, NRRD or a single
 * DICOM file). With `label`, only mask voxels equal to it are the ROI; otherwise every non-zero voxel.
 */
export function radiomicsExtract(opts: { image: string; mask: string; settings?: string; label?: number }): RadiomicsResult {
  const settings = loadRadiomicsSettings(opts.settings);
  const image = readImageFile(opts.image, readBytes(opts.image, 'image'));
  const mask = readImageFile(opts.mask, readBytes(opts.mask, 'mask'));
  if (opts.label !== undefined) {
    const label = opts.label;
    if (!Number.isFinite(label)) throw new RadiomicsError('TWF_E_RADIOMICS_SETTINGS', `--label must be a number (a mask voxel value), got ${label}`);
    if (!mask.data.some((v) => v === label)) {
      throw new RadiomicsError('TWF_E_RADIOMICS_EMPTY_ROI', `the mask ${opts.mask} has no voxel with label ${label}`);
    }
    mask.data = mask.data.map((v) => (v === label ? 1 : 0));
  }
  return extractRadiomics(image, mask, settings);
}

/** Features as text, one `tag value` line each, grouped by family with a blank line between families. */
export function formatFeatures(r: RadiomicsResult): string {
  const lines: string[] = [];
  let last = '';
  const width = Math.max(...Object.keys(r.features).map((t) => t.length));
  for (const [tag, v] of Object.entries(r.features)) {
    const fam = familyOfTag(tag);
    if (last && fam !== last) lines.push('');
    last = fam;
    lines.push(`${tag.padEnd(width)}  ${Number.isInteger(v) ? String(v) : v.toPrecision(6)}`);
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}
