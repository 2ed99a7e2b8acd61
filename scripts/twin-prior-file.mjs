// Writes a --prior file for `twinfed twin evaluate` from other trials' data: per model the additive
// sufficient statistics (shared/src/twin/prior.ts) of plain fits to every patient with >= 4 usable
// measurements of the given CSVs (Laleh format). Experiment helper, not product code; the federated
// prior comes from the twin-prior study. `npm run build` first.
//   node scripts/twin-prior-file.mjs OUT.json fixtures/growth-laleh2022/Study2.csv fixtures/growth-laleh2022/Study3.csv
import { readFileSync, writeFileSync } from 'node:fs';
import { MODEL_NAMES, fitPatient, mergeStats, parseLalehCsv, sufficientStats } from '../shared/dist/twin/index.js';

const [out, ...csvs] = process.argv.slice(2);
if (!out || csvs.length === 0) throw new Error('usage: node scripts/twin-prior-file.mjs OUT.json A.csv [B.csv ...]');
const patients = csvs.flatMap((f) => parseLalehCsv(readFileSync(f, 'utf8'))).filter((p) => p.days.length >= 4 && Math.max(...p.volumesMm3) > 0);
const models = {};
for (const m of MODEL_NAMES) {
  const fits = patients.map((p) => fitPatient(m, p, { seed: 1 }));
  const stats = fits.map((f) => sufficientStats([f])).reduce((a, b) => mergeStats(a, b));
  delete stats.model; // the key in "models" names it
  models[m] = stats;
}
writeFileSync(out, JSON.stringify({ source: csvs, patients: patients.length, models }, null, 1));
console.log(`${out}: ${patients.length} patients, ${MODEL_NAMES.length} models`);
