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
  /**
   * SPKI SHA-256 pins (sha256/BASE64, RFC 7469) of the coordinator's TLS keys, set at enrolment
   * and extended by the coordinator's signed rollover. With pins, every connection to an https://
   * coordinator must present one of these keys (certificate authorities and host names are not
   * used); empty: Node's certificate authorities and the host name decide (a coordinator behind a
   * reverse proxy with a public certificate, enrolled with --tls-ca).
   */
  tlsPins: z
    .array(z.string().regex(/^sha256\/[A-Za-z0-9+/]{43}=$/))
    .max(32)
    .default([]),
  /** Accepted difference between a coordinator message's timestamp and this site's clock, ms. */
  clockSkewMs: z
    .number()
    .int()
    .min(1000)
    .default(5 * 60 * 1000),
  /**
   * Largest message accepted from the coordinator, bytes (the WebSocket's maxPayload; the ws
   * library's default of 100 MiB refused the aggregate of a 10M-parameter model: 2,443 ciphertexts
   * of 64 KB, 160 MB). Default 1 GiB: an aggregate of ~65M parameters.
   */
  maxMessageBytes: z
    .number()
    .int()
    .min(1 << 20)
    .max(2 ** 31 - 1)
    .default(2 ** 30),
  /** Minimum number of validation patients below which per-site metrics are suppressed (small counts). */
  minReportPatients: z.number().int().min(1).default(2),
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug']).default('info'),
  /**
   * The site's own differential-privacy policy, per dataset across all studies (dp_ledger): a round
   * that would take a dataset's epsilon (at `delta`) above `maxEpsilon` is refused, even when the
   * study's manifest would allow it. `requireDp`: refuse to train studies without DP.
   */
  privacy: z
    .object({
      maxEpsilon: z.number().positive().max(1000).default(10),
      delta: z.number().positive().max(1e-3).default(1e-5),
      requireDp: z.boolean().default(false),
    })
    .default({ maxEpsilon: 10, delta: 1e-5, requireDp: false }),
  /**
   * The site's local web console and /metrics (`twinfed site run`, `twinfed site console`). Bound to
   * loopback by default; another host must be a loopback or private (hospital network) address
   * (site-node/src/console/bind.ts): never all interfaces, never a public address.
   */
  console: z
    .object({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(7401),
    })
    .default({ host: '127.0.0.1', port: 7401 }),
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
