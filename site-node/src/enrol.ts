import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EnrolResponse, PROTOCOL_VERSION } from '@twinfed/protocols';
import { AuditLog } from '@twinfed/shared/audit/index';
import { fingerprint, generateIdentity, initSodium, normalizeTlsPin, saveIdentity, toB64 } from '@twinfed/shared/crypto/index';
import { SITE_FILES, saveSiteConfig, type SiteConfig } from './config.js';
import { openSiteDb } from './db/index.js';
import { SiteError } from './errors.js';
import { CoordinatorLink } from './net.js';

/**
 * How an enrolment trusts an https:// coordinator's TLS key: the pin the lead handed out
 * (`sha256/BASE64`, RFC 7469), 'first-use' (pin whatever key answers; print it so the officer
 * compares), or 'ca' (no pin: certificate authorities and the host name, for a coordinator
 * behind a reverse proxy whose public certificate changes key at each renewal).
 */
export type EnrolTlsTrust = { pin: string } | 'first-use' | 'ca';

/**
 * `twinfed site enrol`: creates the site's identity keys (Ed25519 to sign,
 * X25519 to receive sealed keys; file mode 0600), registers the public keys
 * with the coordinator using a one-time token, pins the coordinator's key,
 * and creates the site's database. The site only ever dials out. For an https:// coordinator it
 * also pins the coordinator's TLS key (`tls`, default first use); with a pin given, a server
 * presenting another key is refused (TWF_E_TLS_PIN) before the token leaves the site.
 */
export async function enrolSite(opts: { dataDir: string; coordinatorUrl: string; token: string; tls?: EnrolTlsTrust }): Promise<SiteConfig> {
  const trust = opts.tls ?? 'first-use';
  let given: string | null = null;
  if (typeof trust === 'object') {
    given = normalizeTlsPin(trust.pin);
    if (!given) throw new SiteError('TWF_E_ENROL_FAILED', `--tls-pin ${trust.pin}: expected sha256/ and the base64 SHA-256 of the certificate's public key (44 characters)`);
  }
  const secure = new URL(opts.coordinatorUrl).protocol === 'https:';
  if (given && !secure) throw new SiteError('TWF_E_ENROL_FAILED', `a TLS pin needs an https:// coordinator URL, not ${opts.coordinatorUrl}`);
  const link = new CoordinatorLink({ coordinatorUrl: opts.coordinatorUrl, tlsPins: given ? [given] : [], firstUse: trust === 'first-use' });
  await initSodium();
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const idPath = join(opts.dataDir, SITE_FILES.identity);
  if (existsSync(idPath) || existsSync(join(opts.dataDir, SITE_FILES.config))) throw new SiteError('TWF_E_ALREADY_ENROLLED', opts.dataDir);
  const id = generateIdentity();
  const url = new URL('/api/enrol', opts.coordinatorUrl).toString();
  let res: { status: number; json: unknown };
  try {
    res = await link.request('POST', '/api/enrol', {
      body: { token: opts.token, protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) },
    });
  } catch (e) {
    if (e instanceof SiteError) throw e; // TWF_E_TLS_PIN, TWF_E_TLS, TWF_E_PROXY say what to do
    throw new SiteError('TWF_E_ENROL_FAILED', `${url}${link.via}: ${(e as Error).message}`);
  }
  const json = (res.json ?? {}) as { code?: string; message?: string };
  if (res.status < 200 || res.status >= 300) throw new SiteError('TWF_E_ENROL_FAILED', `${res.status} ${json.code ?? ''} ${json.message ?? ''}`.trim());
  const r = EnrolResponse.parse(json);
  saveIdentity(idPath, id);
  const config: SiteConfig = {
    coordinatorUrl: opts.coordinatorUrl,
    siteId: r.siteId,
    siteName: r.siteName,
    coordinatorId: r.coordinatorId,
    coordinatorPublicKey: r.coordinatorPublicKey,
    tlsPins: [...link.pinned],
    clockSkewMs: 5 * 60 * 1000,
    maxMessageBytes: 2 ** 30,
    minReportPatients: 2,
    logLevel: 'info',
    privacy: { maxEpsilon: 10, delta: 1e-5, requireDp: false },
    console: { host: '127.0.0.1', port: 7401 },
  };
  saveSiteConfig(opts.dataDir, config);
  const db = openSiteDb(join(opts.dataDir, SITE_FILES.db));
  const audit = new AuditLog(db, r.siteId, id.ed25519SecretKey, id.ed25519PublicKey);
  audit.append({ actor: r.siteId, action: 'site.enrolled', peer: r.coordinatorId, detail: `coordinator key fingerprint ${fingerprint(Buffer.from(r.coordinatorPublicKey, 'base64'))}` });
  for (const pin of link.pinned)
    audit.append({ actor: r.siteId, action: 'tls.pin_added', peer: r.coordinatorId, detail: JSON.stringify({ pin, source: given ? 'enrolment, pin given' : 'enrolment, trust on first use' }) });
  db.$client.close();
  return config;
}
