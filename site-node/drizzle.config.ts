import { defineConfig } from 'drizzle-kit';

// Reads the compiled schema (run `npm run build` first): drizzle-kit's loader
// does not resolve NodeNext `.js` specifiers to `.ts`.
export default defineConfig({
  dialect: 'sqlite',
  schema: './dist/db/schema.js',
  out: './drizzle',
});
