import { join } from 'node:path';
import { AuditLog } from '@twinfed/shared/audit/index';
import type { Identity } from '@twinfed/shared/crypto/index';
import type { CoordinatorConfig } from '../config.js';
import { openCoordinatorDb, type CoordinatorDb } from '../db/index.js';
import type { CoordinatorStore } from './index.js';
import { SqliteStore } from './sqlite.js';

export interface OpenedStore {
  store: CoordinatorStore;
  audit: AuditLog;
  /** The SQLite database; null when the state is in PostgreSQL. */
  db: CoordinatorDb | null;
  /** Where the state is, for logs: the SQLite file, or the PostgreSQL URL without its password. */
  where: string;
  close(): void;
}

/**
 * The coordinator's store and audit log: SQLite in dataDir (default), or PostgreSQL at
 * config.storeUrl. Throws CoordinatorError TWF_E_DB when PostgreSQL cannot be reached or migrated.
 * node-postgres and its worker are loaded only then.
 */
export async function openCoordinatorStore(config: CoordinatorConfig, coordinatorId: string, identity: Identity): Promise<OpenedStore> {
  if (config.storeUrl) {
    const { PgStore, openPgConnection, pgAuditBackend } = await import('./postgres.js');
    const { redactUrl } = await import('./pg-sync.js');
    const conn = openPgConnection(config.storeUrl, { statementTimeoutMs: config.storeTimeoutS * 1000 });
    try {
      const audit = new AuditLog(pgAuditBackend(conn), coordinatorId, identity.ed25519SecretKey, identity.ed25519PublicKey);
      return { store: new PgStore(conn), audit, db: null, where: redactUrl(config.storeUrl), close: () => conn.close() };
    } catch (e) {
      conn.close();
      throw e;
    }
  }
  const file = join(config.dataDir, 'coordinator.db');
  const db = openCoordinatorDb(file);
  const audit = new AuditLog(db, coordinatorId, identity.ed25519SecretKey, identity.ed25519PublicKey);
  return { store: new SqliteStore(db), audit, db, where: file, close: () => db.$client.close() };
}
