import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';

/**
 * better-sqlite3, picked by Node version. Import `Database` from here, never from
 * 'better-sqlite3' itself:
 *  - Node 20: better-sqlite3 12 (compiled against this Node's ABI on install). 13 needs Node 22
 *    and crashes on 20.
 *  - Node >= 22: better-sqlite3 13 (package alias better-sqlite3-13), a Node-API addon shipped
 *    prebuilt for every Node >= 22, so nothing is compiled. 12 rebuilt for Node 24 aborts the
 *    process at teardown (Statement::~Statement, RemoveEnvironmentCleanupHook;
 *    WiseLibs/better-sqlite3#1515, fixed in 13).
 * Both keep the same API, so drizzle's better-sqlite3 driver takes either.
 */
export const SQLITE_DRIVER = Number(process.versions.node.split('.')[0]) >= 22 ? 'better-sqlite3-13' : 'better-sqlite3';

const Database = createRequire(import.meta.url)(SQLITE_DRIVER) as typeof BetterSqlite3;

/** A better-sqlite3 connection (the same class under either version). */
export type SqliteDatabase = BetterSqlite3.Database;
export type SqliteOptions = BetterSqlite3.Options;

export default Database;
