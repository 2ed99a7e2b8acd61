import { defineConfig } from 'drizzle-kit';

// The schema is read from the compiled output (run `npm run build` first):
// drizzle-kit's loader does not resolve NodeNext `.js` specifiers to `.ts`.
export default defineConfig({
  dialect: 'sqlite',
  schema: './dist/db/schema.js',
  out: './drizzle',
});
