import Database, { type SqliteDatabase } from './driver.js';
import { drizzle, type BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { chmodSync, existsSync } from 'node:fs';

/**
 * Opens (creating if needed) a Twinfed SQLite file and applies the migrations
 * in `migrationsFolder`. WAL + synchronous=FULL: a committed transaction
 * survives a crash (kill -9) of the process. A new file is made mode 0600.
 * `incrementalVacuum`: a new file gets auto_vacuum = INCREMENTAL, so `PRAGMA incremental_vacuum`
 * can hand the pages of deleted rows back to the file system.
 */
export function openMigratedSqlite<S extends Record<string, unknown>>(
  path: string,
  schema: S,
  migrationsFolder: string,
  opts: { incrementalVacuum?: boolean } = {},
): BetterSQLite3Database<S> & { $client: SqliteDatabase } {
  const fresh = !existsSync(path);
  const sqlite = new Database(path);
  if (fresh) chmodSync(path, 0o600);
  // auto_vacuum is fixed when the first table is created, and must come before journal_mode = WAL
  // (set afterwards it is silently ignored): a file created without it keeps reusing freed pages
  // but never returns them to the file system (VACUUM converts it, offline).
  if (fresh && opts.incrementalVacuum) sqlite.pragma('auto_vacuum = INCREMENTAL');
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('busy_timeout = 5000');
  const db = drizzle(sqlite, { schema });
  migrate(db, { migrationsFolder });
  return db as BetterSQLite3Database<S> & { $client: SqliteDatabase };
}
