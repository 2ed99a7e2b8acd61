import Database, { type SqliteDatabase } from '@twinfed/shared/db/driver';
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { fileURLToPath } from 'node:url';
import { openMigratedSqlite } from '@twinfed/shared/db/index';
import * as schema from './schema.js';

export type CoordinatorDb = BetterSQLite3Database<typeof schema> & { $client: SqliteDatabase };

const MIGRATIONS = fileURLToPath(new URL('../../drizzle', import.meta.url));

/**
 * Opens (creating if needed) the coordinator's SQLite file with the migrations in coordinator/drizzle.
 * A new file has auto_vacuum = INCREMENTAL: pruned aggregates (the catch-up window) give their
 * pages back after each close (SqliteStore.reclaimSpace).
 */
export function openCoordinatorDb(path: string): CoordinatorDb {
  return openMigratedSqlite(path, schema, MIGRATIONS, { incrementalVacuum: true });
}

export { schema };

/** A fresh, migrated in-memory database (tests): nothing touches the disk. */
export function openMemoryCoordinatorDb(): CoordinatorDb {
  const db = drizzle(new Database(':memory:'), { schema });
  migrate(db, { migrationsFolder: MIGRATIONS });
  return db as CoordinatorDb;
}
