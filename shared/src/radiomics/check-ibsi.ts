#!/usr/bin/env node
/**
 * `npm run check:ibsi`: computes every IBSI feature on the IBSI chapter 1 digital phantom with the phantom
 * settings (fixtures/radiomics/ibsi-phantom.json), compares with the consensus reference table
 * (fixtures/ibsi-phantom/ibsi_1_dig_phantom.csv) using IBSI's rule, prints pass/total per family and each
 * failing tag. Exit code 1 when any computed tag fails (missing tags are listed but do not fail the check;
 * `--strict` makes them fail too). `--json` prints the report as JSON.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readNiftiImage } from '../imaging/nifti.js';
import { compareWithReference, formatCompliance, parseReferenceTable, type ComplianceReport } from './ibsi.js';
import { extractRadiomics, parseRadiomicsSettings } from './index.js';

/** The repository's fixtures folder (this file runs from shared/dist/radiomics/). */
export const FIXTURES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../fixtures');

/** Runs the phantom check from the fixtures; returns the report and the extraction warnings. */
export function runIbsiPhantomCheck(fixturesDir = FIXTURES_DIR): { report: ComplianceReport; warnings: string[]; features: Record<string, number> } {
  const dir = path.join(fixturesDir, 'ibsi-phantom');
  const image = readNiftiImage(readFileSync(path.join(dir, 'nifti/image/phantom.nii.gz')), 'phantom.nii.gz');
  const mask = readNiftiImage(readFileSync(path.join(dir, 'nifti/mask/mask.nii.gz')), 'mask.nii.gz');
  const settingsFile = path.join(fixturesDir, 'radiomics/ibsi-phantom.json');
  const settings = parseRadiomicsSettings(JSON.parse(readFileSync(settingsFile, 'utf8')), settingsFile);
  const { features, warnings } = extractRadiomics(image, mask, settings);
  const rows = parseReferenceTable(readFileSync(path.join(dir, 'ibsi_1_dig_phantom.csv'), 'utf8'));
  return { report: compareWithReference(features, rows), warnings, features };
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = process.argv.slice(2);
  const { report, warnings } = runIbsiPhantomCheck();
  if (args.includes('--json')) console.log(JSON.stringify(report));
  else {
    console.log('IBSI chapter 1 digital phantom: computed features vs consensus reference values');
    console.log('(pass: value rounded to 3 significant figures within the tolerance; no consensus: not counted)\n');
    console.log(formatCompliance(report, { listMissing: true }));
    for (const w of warnings) console.log(`warning: ${w}`);
  }
  const strict = args.includes('--strict');
  process.exit(report.total.fail > 0 || (strict && report.total.missing > 0) ? 1 : 0);
}
