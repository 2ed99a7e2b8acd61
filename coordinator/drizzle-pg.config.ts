import { defineConfig } from 'drizzle-kit';

// The optional PostgreSQL store's migrations (store/postgres.ts): `npx drizzle-kit generate --config
// drizzle-pg.config.ts` after `npm run build`, like drizzle.config.ts for SQLite. A schema change goes
// into both schema.ts and pg-schema.ts (pg-schema.ts fails the build when their rows differ).
export default defineConfig({
  dialect: 'postgresql',
  schema: './dist/db/pg-schema.js',
  out: './drizzle-pg',
});
