#!/usr/bin/env node
// The `twinfed` command npm links on install (cli/package.json "bin"). It is committed, so it exists
// when npm links bins, before anything is compiled; it runs the compiled CLI (cli/dist/bin.js).
// The root `prepare` script builds after `npm install` / `npm ci`; if dist is still missing (the
// build was skipped or failed), the first run builds once from the repository root.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(dist)) {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const buildCmd = `cd ${root} && npm run build`;
  if (!existsSync(`${root}turbo.json`) || !existsSync(`${root}node_modules/typescript`)) {
    console.error(`twinfed is not built (${fileURLToPath(dist)} is missing) and cannot build here: run \`${buildCmd}\` in a checkout with dev dependencies (npm install)`);
    process.exit(1);
  }
  console.error('first run: building Twinfed (about a minute)...');
  // The build's output goes to stderr, so the command's own stdout (e.g. --json) stays clean.
  const r = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['run', 'build', '--silent'], { cwd: root, stdio: ['ignore', 2, 2], shell: process.platform === 'win32' });
  if (r.status !== 0 || !existsSync(dist)) {
    console.error(`the build failed${r.error ? ` (${r.error.message})` : ''}; run \`${buildCmd}\` to see why`);
    process.exit(1);
  }
}
await import(dist.href);
