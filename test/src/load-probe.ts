/**
 * `node --import <this file>` records which modules a process loads, into the file named by
 * TWINFED_LOAD_PROBE_OUT, one `esm URL` or `cjs PATH` per line:
 *  - a resolve hook (module.register) records every URL the ESM loader resolves: each static or
 *    dynamic import, including the entry file of a CommonJS package imported from ESM;
 *  - at exit, the CommonJS cache is appended: modules that CommonJS code require()s internally
 *    (tfjs's own files, native addons' wrappers) never pass an ESM hook but all land in that cache.
 * Used by coordinator-closure.test.ts to show what `twinfed coordinator start` loads.
 */
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const out = process.env.TWINFED_LOAD_PROBE_OUT;
if (out) {
  register(new URL('./load-probe-hooks.js', import.meta.url), { data: { out } });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () =>
    appendFileSync(
      out,
      Object.keys(cache)
        .map((k) => `cjs ${k}\n`)
        .join(''),
    ),
  );
}
