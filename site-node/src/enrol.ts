import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EnrolResponse, PROTOCOL_VERSION } from '@twinfed/protocols';
import { AuditLog } from '@twinfed/shared/audit/index';
import { fingerprint, generateIdentity, initSodium, saveIdentity, toB64 } from '@twinfed/shared/crypto/index';
import { SITE_FILES, saveSiteConfig, type SiteConfig } from './config.js';
import { openSiteDb } from './db/index.js';
import { SiteError } from './errors.js';

/**
 * `twinfed site enrol`: creates the site's identity keys (Ed25519 to sign,
 * X25519 to receive sealed keys; file mode 0600), registers the public keys
 * with the coordinator using a one-time token, pins the coordinator's key,
 * and creates the site's database. The site only ever dials out.
 */
export async function enrolSite(opts: { dataDir: string; coordinatorUrl: string; token: string; fetchImpl?: typeof fetch }): Promise<SiteConfig> {
  await initSodium();
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const idPath = join(opts.dataDir, SITE_FILES.identity);
  if (existsSync(idPath) || existsSync(join(opts.dataDir, SITE_FILES.config))) throw new SiteError('TWF_E_ALREADY_ENROLLED', opts.dataDir);
  const id = generateIdentity();
  const url = new URL('/api/enrol', opts.coordinatorUrl).toString();
  let res: Response;
  try {
    res = await (opts.fetchImpl ?? fetch)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: opts.token, protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) }),
    });
  } catch (e) {
    throw new SiteError('TWF_E_ENROL_FAILED', `${url}: ${(e as Error).message}`);
  }
  const json = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
  if (!res.ok) throw new SiteError('TWF_E_ENROL_FAILED', `${res.status} ${json.code ?? ''} ${json.message ?? ''}`.trim());
  const r = EnrolResponse.parse(json);
  saveIdentity(idPath, id);
  const config: SiteConfig = {
    coordinatorUrl: opts.coordinatorUrl,
    siteId: r.siteId,
    siteName: r.siteName,
    coordinatorId: r.coordinatorId,
    coordinatorPublicKey: r.coordinatorPublicKey,
    clockSkewMs: 5 * 60 * 1000,
    minReportPatients: 2,
    logLevel: 'info',
  };
  saveSiteConfig(opts.dataDir, config);
  const db = openSiteDb(join(opts.dataDir, SITE_FILES.db));
  const audit = new AuditLog(db, r.siteId, id.ed25519SecretKey, id.ed25519PublicKey);
  audit.append({ actor: r.siteId, action: 'site.enrolled', peer: r.coordinatorId, detail: `coordinator key fingerprint ${fingerprint(Buffer.from(r.coordinatorPublicKey, 'base64'))}` });
  db.$client.close();
  return config;
}
