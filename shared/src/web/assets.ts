import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The consoles' static files, served by name from an allow-list (no path from the request ever
 * reaches the file system): the stylesheet and the behaviour script in shared/web-assets/, and
 * uPlot (MIT, a maintained 50 KB charting library) from node_modules. Nothing is fetched from
 * another origin, so the consoles work inside a hospital network without internet.
 */
const require = createRequire(import.meta.url);
const OWN = (f: string) => fileURLToPath(new URL(`../../web-assets/${f}`, import.meta.url));
const FILES: Record<string, { path: () => string; contentType: string }> = {
  'console.css': { path: () => OWN('console.css'), contentType: 'text/css; charset=utf-8' },
  'console.js': { path: () => OWN('console.js'), contentType: 'text/javascript; charset=utf-8' },
  'uplot.js': { path: () => require.resolve('uplot/dist/uPlot.iife.min.js'), contentType: 'text/javascript; charset=utf-8' },
  'uplot.css': { path: () => require.resolve('uplot/dist/uPlot.min.css'), contentType: 'text/css; charset=utf-8' },
};
const cache = new Map<string, Buffer>();

/** The asset of that name, or null for any other name. */
export function consoleAsset(name: string): { body: Buffer; contentType: string } | null {
  if (!Object.prototype.hasOwnProperty.call(FILES, name)) return null;
  const f = FILES[name];
  let body = cache.get(name);
  if (!body) {
    body = readFileSync(f.path());
    cache.set(name, body);
  }
  return { body, contentType: f.contentType };
}

export const CONSOLE_ASSET_NAMES = Object.keys(FILES);
