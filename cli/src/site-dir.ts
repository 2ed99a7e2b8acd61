import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * Why `dir` is not an enrolled site's data folder (null when it is: site.json is there). Every site
 * command but enrol and doctor checks this first, so a wrong or missing --data-dir reads as what it
 * is rather than as a SQLite error, and creates nothing.
 */
export function missingSite(dataDir: string | undefined): string | null {
  if (dataDir === undefined) return null;
  const dir = resolve(dataDir);
  const enrol = `run twinfed site enrol --coordinator URL --token TOKEN --data-dir ${dataDir} first, or pass the --data-dir of an enrolled site`;
  if (!existsSync(dir)) return `TWF_E_SITE_CONFIG: no site at ${dir} (the folder does not exist): ${enrol}`;
  if (!statSync(dir).isDirectory()) return `TWF_E_SITE_CONFIG: no site at ${dir} (it is a file, not a folder): ${enrol}`;
  if (!existsSync(join(dir, 'site.json'))) return `TWF_E_SITE_CONFIG: no site at ${dir} (no site.json: not enrolled): ${enrol}`;
  return null;
}
