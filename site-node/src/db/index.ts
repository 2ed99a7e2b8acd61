import type Database from 'better-sqlite3';
import type { BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { fileURLToPath } from 'node:url';
import { openMigratedSqlite } from '@twinfed/shared/db/index';
import * as schema from './schema.js';

export type SiteDb = BetterSQLite3Database<typeof schema> & { $client: Database.Database };

const MIGRATIONS = fileURLToPath(new URL('../../drizzle', import.meta.url));

/**
 * Opens the site's own SQLite file (mode 0600: it holds patient data and the
 * study secret keys) with the migrations in site-node/drizzle.
 */
export function openSiteDb(path: string): SiteDb {
  return openMigratedSqlite(path, schema, MIGRATIONS);
}

export { schema };
