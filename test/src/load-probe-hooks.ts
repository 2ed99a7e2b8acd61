/**
 * Module-loader hooks of load-probe.ts (they run on node's loader thread): every URL the ESM loader
 * resolves, static import or dynamic import(), is appended to the file the probe names.
 */
import { appendFileSync } from 'node:fs';

let out = '';
export function initialize(data: { out: string }): void {
  out = data.out;
}
type Next = (specifier: string, context: unknown) => Promise<{ url: string }>;
export async function resolve(specifier: string, context: unknown, next: Next): Promise<{ url: string }> {
  const r = await next(specifier, context);
  appendFileSync(out, `esm ${r.url}\n`);
  return r;
}
