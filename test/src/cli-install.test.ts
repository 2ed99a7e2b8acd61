import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Coordinator } from '@twinfed/coordinator';
import { importPath, openSiteStore, type ImportRow } from '@twinfed/site-node';
import { enrolNewSite, startCoordinator, tempDir } from './harness.js';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const FIX = join(REPO, 'fixtures');
const LAUNCHER = join(REPO, 'cli', 'bin', 'twinfed.mjs');
const run = (file: string, ...args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((res) => {
    execFile(process.execPath, [file, ...args], { encoding: 'utf8', timeout: 120_000 }, (e, out, err) => res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
  });
const twinfed = (...args: string[]) => run(LAUNCHER, ...args);

/**
 * A new user's first minutes: the `twinfed` command npm links, site commands pointed at the wrong
 * folder, and an import that reports each file as it goes (README, "On a fresh machine").
 */
describe('install to first run', () => {
  const tmp = tempDir('cli-install');
  let c: Coordinator | undefined;
  const site = join(tmp.dir, 'site');

  before(async () => {
    const s = await startCoordinator(join(tmp.dir, 'c'));
    c = s.c;
    await enrolNewSite(s.url, site, 'Install site');
  });
  after(async () => {
    await c?.close();
    tmp.cleanup();
  });

  it('the bin npm links is a committed, executable launcher (it exists before any build) that runs the CLI', async () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'cli', 'package.json'), 'utf8')) as { bin: Record<string, string> };
    assert.equal(resolve(REPO, 'cli', pkg.bin.twinfed), LAUNCHER);
    assert.ok(statSync(LAUNCHER).mode & 0o111, 'executable');
    assert.match(readFileSync(LAUNCHER, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { bin?: Record<string, string> }> };
    assert.deepEqual(lock.packages.cli.bin, pkg.bin, 'npm ci links the bins the lockfile records');
    const root = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.match(root.scripts.prepare, /scripts\/prepare\.mjs/, 'a build after npm install / npm ci');
    const help = await twinfed('--help');
    assert.equal(help.code, 0, help.err);
    assert.match(help.out, /^Usage: twinfed \[options\] \[command\]/);
    assert.match(help.out, /coordinator/);
  });

  it('--help loads commander and option defaults only: no zod, no database, no TensorFlow.js, no coordinator or site code', async () => {
    const hooks = join(tmp.dir, 'hooks.mjs');
    // fs.writeSync to fd 2: the hooks run on their own thread, whose process.stderr may not be flushed
    // before the CLI exits (Node 24 lost every line).
    writeFileSync(
      hooks,
      "import { writeSync } from 'node:fs';\nexport async function load(url, ctx, next) { if (!url.startsWith('node:')) writeSync(2, 'LOADED ' + url + '\\n'); return next(url, ctx); }\n",
    );
    writeFileSync(join(tmp.dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
    const r = await new Promise<{ code: number | null; err: string }>((res) => {
      execFile(process.execPath, ['--import', join(tmp.dir, 'register.mjs'), LAUNCHER, '--help'], { encoding: 'utf8', timeout: 60_000 }, (e, _out, err) =>
        res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, err }),
      );
    });
    assert.equal(r.code, 0, r.err);
    const loaded = [...r.err.matchAll(/^LOADED (.*)$/gm)].map((m) => m[1]);
    assert.ok(loaded.some((u) => u.includes('commander')) && loaded.some((u) => u.endsWith('cli/dist/bin.js')), loaded.join('\n'));
    const heavy = loaded.filter((u) => /node_modules\/(zod|better-sqlite3|drizzle-orm|@tensorflow|socket\.io|fastify|node-seal|libsodium)|coordinator\/dist|site-node\/dist/.test(u));
    assert.deepEqual(heavy, []);
  });

  it('without a compiled CLI and nothing to build it with, the launcher says exactly what to run', async () => {
    const bare = join(tmp.dir, 'bare');
    mkdirSync(join(bare, 'cli', 'bin'), { recursive: true });
    copyFileSync(LAUNCHER, join(bare, 'cli', 'bin', 'twinfed.mjs'));
    const r = await run(join(bare, 'cli', 'bin', 'twinfed.mjs'), '--help');
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.match(r.err, /twinfed is not built \(.*cli\/dist\/bin\.js is missing\).*run `cd .*bare\/ && npm run build`/);
  });

  it('site commands on a folder that does not exist or is not enrolled: TWF_E_SITE_CONFIG naming the folder and site enrol, no SQLite error, nothing created', async () => {
    const missing = join(tmp.dir, 'no-such-site');
    const empty = join(tmp.dir, 'empty');
    mkdirSync(empty);
    for (const dir of [missing, empty])
      for (const args of [
        ['site', 'run'],
        ['site', 'import', FIX],
        ['site', 'studies'],
        ['site', 'approve', 'S', '--officer', 'O'],
        ['site', 'twin', 'show', 'P'],
      ]) {
        const r = await twinfed(...args, '--data-dir', dir);
        const what = `${args.join(' ')} --data-dir ${dir}`;
        assert.equal(r.code, 1, what);
        assert.match(r.err, new RegExp(`^TWF_E_SITE_CONFIG: no site at ${dir} \\(.*\\): run twinfed site enrol .*--data-dir ${dir} first`), what);
        assert.doesNotMatch(r.err, /database|sqlite/i, what);
      }
    assert.ok(!existsSync(missing) && !existsSync(join(empty, 'site.db')), 'no folder or database created');
    const doctor = await twinfed('site', 'doctor', '--data-dir', missing, '--json');
    assert.equal(doctor.code, 1);
    const checks = (JSON.parse(doctor.out) as { checks: { name: string; ok: boolean; detail: string }[] }).checks;
    assert.match(checks.find((x) => x.name === 'enrolment')!.detail, /site\.json missing: run twinfed site enrol/);
  });

  it('site import reports each file as soon as it is done, [i/n], and --json prints NDJSON: a line per file, then the summary with the whole report', async () => {
    const dir = join(tmp.dir, 'incoming');
    mkdirSync(dir);
    const csv = readFileSync(join(FIX, 'growth-laleh2022/Study2.csv'), 'utf8').split('\n');
    writeFileSync(join(dir, 'a.csv'), csv.slice(0, 40).join('\n'));
    writeFileSync(join(dir, 'notes.txt'), 'not an image\n');
    copyFileSync(join(FIX, 'formats/nibabel/anatomical.nii'), join(dir, 'anatomical.nii'));

    // Library: each row is handed over before importPath resolves, in order, 1..total.
    const store = await openSiteStore(site);
    const seen: [number, number, ImportRow][] = [];
    let resolved = false;
    try {
      const rep = await importPath(store.db, store.audit, dir, {
        refit: false,
        radiomics: false,
        onRow: (r, i, n) => {
          assert.ok(!resolved);
          seen.push([i, n, r]);
        },
      });
      resolved = true;
      assert.equal(seen.length, rep.rows.length);
      assert.deepEqual(
        seen.map(([i, n]) => `${i}/${n}`),
        rep.rows.map((_, k) => `${k + 1}/${rep.rows.length}`),
      );
      assert.deepEqual(
        seen.map(([, , r]) => r),
        rep.rows,
      );
    } finally {
      store.close();
    }

    // CLI, NDJSON: the files are unchanged now (same bytes), the junk file skipped.
    const j = await twinfed('site', 'import', dir, '--data-dir', site, '--no-refit', '--json');
    assert.equal(j.code, 0, j.err);
    const lines = j.out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const files = lines.filter((l) => l.type === 'file');
    assert.equal(lines.length, files.length + 1);
    assert.deepEqual(
      files.map((f) => `${String(f.index)}/${String(f.total)}`),
      files.map((_, k) => `${k + 1}/${files.length}`),
    );
    assert.ok(files.every((f) => typeof f.unit === 'string' && typeof f.status === 'string'));
    const summary = lines[lines.length - 1] as { type: string; imported: number; unchanged: number; skipped: number; failed: number; rows: ImportRow[]; refits: unknown[] };
    assert.equal(summary.type, 'summary');
    assert.equal(summary.rows.length, files.length);
    assert.equal(summary.unchanged + summary.skipped + summary.imported + summary.failed, files.length);
    assert.ok(summary.skipped >= 1 && summary.unchanged >= 1, JSON.stringify(summary.rows));

    // CLI, text: one [i/n] line per file, then the counts.
    const t = await twinfed('site', 'import', dir, '--data-dir', site, '--no-refit');
    assert.equal(t.code, 0, t.err);
    const text = t.out.trimEnd().split('\n');
    assert.equal(text.length, files.length + 1);
    text.slice(0, -1).forEach((l, k) => assert.match(l, new RegExp(`^\\[${k + 1}/${files.length}\\] (imported|unchanged|skipped|failed) +\\S`)));
    assert.match(text[text.length - 1], /^0 imported, \d+ unchanged, \d+ skipped, 0 failed$/);
    assert.match(t.err, /^importing .* into .*\.\.\.$/m);
  });
});
