import { sqliteAuditBackend } from '@twinfed/shared/audit/index';
import { openMemoryCoordinatorDb } from '../db/index.js';
import { storeConformance } from './conformance.js';
import { SqliteStore } from './sqlite.js';

// The PostgreSQL store runs the same cases against a real server: test/src/store-postgres.test.ts.
storeConformance('SQLite (in memory)', () => {
  const db = openMemoryCoordinatorDb();
  return { store: new SqliteStore(db), audit: sqliteAuditBackend(db), exec: (sql) => void db.$client.exec(sql), close: () => void db.$client.close() };
});
