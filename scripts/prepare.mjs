// Root `prepare` script: runs after `npm install` and `npm ci` in a checkout and compiles every
// package (turbo, cached), so `npx twinfed` works right after installing. It skips itself where
// there is nothing to build or nothing to build with (the Docker images install from the package
// manifests alone and build later; a production install without dev dependencies), and never
// fails the install: a failed build is reported, and the `twinfed` launcher (cli/bin/twinfed.mjs)
// builds again on its first run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

if (process.env.TWINFED_SKIP_BUILD) process.exit(0);
if (!existsSync('cli/src/bin.ts') || !existsSync('tsconfig.json') || !existsSync('node_modules/typescript') || !existsSync('node_modules/turbo')) {
  console.error('twinfed prepare: sources or dev dependencies missing here, not building (npm run build does it)');
  process.exit(0);
}
console.error('twinfed prepare: building every package (about a minute the first time)...');
const r = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['run', 'build', '--silent'], { stdio: 'inherit', shell: process.platform === 'win32' });
if (r.status !== 0) console.error(`twinfed prepare: the build failed (exit ${r.status ?? r.signal}); the install itself is complete: run npm run build to see why`);
