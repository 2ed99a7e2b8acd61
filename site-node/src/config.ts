import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { SiteError } from './errors.js';

/** site.json in the site's data folder: written by `twinfed site enrol`, editable by hospital IT. */
export const SiteConfigSchema = z.object({
  coordinatorUrl: z.string().url(),
  siteId: z.string().min(1),
  siteName: z.string().min(1),
  coordinatorId: z.string().min(1),
  /** Coordinator's Ed25519 key (base64), pinned at enrolment: every coordinator message must verify with it. */
  coordinatorPublicKey: z.string().min(40),
  /** Accepted difference between a coordinator message's timestamp and this site's clock, ms. */
  clockSkewMs: z.number().int().min(1000).default(5 * 60 * 1000),
  /** Minimum number of validation patients below which per-site metrics are suppressed (small counts). */
  minReportPatients: z.number().int().min(1).default(2),
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug']).default('info'),
});
export type SiteConfig = z.infer<typeof SiteConfigSchema>;

export const SITE_FILES = { config: 'site.json', identity: 'identity.json', db: 'site.db', models: 'models' } as const;

export function loadSiteConfig(dataDir: string): SiteConfig {
  const p = join(dataDir, SITE_FILES.config);
  if (!existsSync(p)) throw new SiteError('TWF_E_SITE_CONFIG', `${p} not found`);
  const r = SiteConfigSchema.safeParse(JSON.parse(readFileSync(p, 'utf8')));
  if (!r.success) throw new SiteError('TWF_E_SITE_CONFIG', r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  return r.data;
}

export function saveSiteConfig(dataDir: string, c: SiteConfig): void {
  writeFileSync(join(dataDir, SITE_FILES.config), JSON.stringify(c, null, 2) + '\n', { mode: 0o600 });
}
