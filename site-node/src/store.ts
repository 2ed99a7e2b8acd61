import { join } from 'node:path';
import { AuditLog } from '@twinfed/shared/audit/index';
import { initSodium, loadIdentity } from '@twinfed/shared/crypto/index';
import { SITE_FILES, loadSiteConfig, type SiteConfig } from './config.js';
import { openSiteDb, type SiteDb } from './db/index.js';

/** The site's database with its signed audit log, for commands that run beside (or without) the node. */
export async function openSiteStore(dataDir: string): Promise<{ config: SiteConfig; db: SiteDb; audit: AuditLog; close: () => void }> {
  await initSodium();
  const config = loadSiteConfig(dataDir);
  const db = openSiteDb(join(dataDir, SITE_FILES.db));
  const id = loadIdentity(join(dataDir, SITE_FILES.identity));
  const audit = new AuditLog(db, config.siteId, id.ed25519SecretKey, id.ed25519PublicKey);
  return { config, db, audit, close: () => db.$client.close() };
}
