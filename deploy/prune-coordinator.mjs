#!/usr/bin/env node
// Removes the ML and imaging stack from a built tree that only runs `twinfed coordinator start`.
//
//   node deploy/prune-coordinator.mjs <lockfile> <tree> [--dry-run]
//
// The coordinator's dependency closure is the protocol and the core (HE, secure aggregation,
// crypto, audit, db): it never loads TensorFlow.js or the imaging readers
// (test/src/coordinator-closure.test.ts checks it). npm cannot leave them out, though: they are
// dependencies of @twinfed/shared, which the coordinator needs for its core. So after
// `npm prune --omit=dev` this deletes from <tree>/node_modules (and <tree>/<workspace>/node_modules)
// every package reachable only from DROP, computed from the lockfile: a package that a kept
// dependency also needs stays. Site, segmentation, response and radiomics commands of the CLI in
// that tree then fail with ERR_MODULE_NOT_FOUND; they belong to the site-node image.
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Packages of the ML and imaging stack (dependencies of @twinfed/shared). */
const DROP = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm', 'nifti-reader-js', 'dicom-parser', 'nrrd-js'];

const [lockfile, tree, flag] = process.argv.slice(2);
if (!lockfile || !tree) {
  console.error('usage: prune-coordinator.mjs <package-lock.json> <tree> [--dry-run]');
  process.exit(2);
}
const dryRun = flag === '--dry-run';
const packages = JSON.parse(readFileSync(lockfile, 'utf8')).packages;

/** Where npm put `name` as needed by the package at `from` (a lockfile key): nearest node_modules upwards. */
function locate(from, name) {
  let dir = from;
  for (;;) {
    const key = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
    if (packages[key]) return packages[key].link ? packages[key].resolved : key;
    if (!dir) return null;
    const i = dir.lastIndexOf('/node_modules/');
    dir = i >= 0 ? dir.slice(0, i) : '';
  }
}
/** Lockfile keys reachable from the given (from, name) edges, skipping names in `stop`. */
function closure(edges, stop) {
  const seen = new Set();
  const todo = [...edges];
  while (todo.length) {
    const [from, name] = todo.pop();
    if (stop.has(name)) continue;
    const key = locate(from, name);
    if (!key || seen.has(key)) continue;
    seen.add(key);
    const p = packages[key];
    for (const dep of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) todo.push([key, dep]);
  }
  return seen;
}
const workspaces = Object.keys(packages).filter((k) => k && !k.includes('node_modules/'));
const runtimeEdges = workspaces.flatMap((w) => Object.keys({ ...packages[w].dependencies, ...packages[w].optionalDependencies }).map((d) => [w, d]));
const keep = closure(runtimeEdges, new Set(DROP));
const dropped = [...closure(runtimeEdges, new Set())].filter((k) => !keep.has(k) && !workspaces.includes(k));
let removed = 0;
for (const key of dropped.sort()) {
  const dir = join(tree, key);
  if (!existsSync(dir)) continue;
  console.log(`${dryRun ? 'would remove' : 'remove'} ${key}`);
  if (!dryRun) {
    rmSync(dir, { recursive: true, force: true });
    const scope = dirname(dir);
    if (basename(dirname(scope)) === 'node_modules' && basename(scope).startsWith('@') && readdirSync(scope).length === 0) rmdirSync(scope);
  }
  removed++;
}
// Left-over links in node_modules/.bin would dangle; npm recreates them on the next install.
console.log(`${removed} packages ${dryRun ? 'would be ' : ''}removed (ML and imaging stack only the site node needs)`);
