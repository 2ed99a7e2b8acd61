/**
 * npm run docs:screenshots — the console screenshots in docs/ (console-*.png), taken from a real
 * demo: runs `twinfed demo --serve` (a coordinator and three sites, a real encrypted study), imports
 * the longitudinal twin example into the first site while it serves, then signs in to each console
 * in Debian's chromium (playwright-core) and photographs every page. Content, not pixels, is what
 * the browser tests assert; these pictures are for people reading the docs.
 */
import { spawn } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { launchBrowser, signIn } from '../browser.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = join(ROOT, 'cli/dist/bin.js');
const OUT = join(ROOT, 'docs');

const demo = spawn(process.execPath, [BIN, 'demo', '--serve', '--out', join(ROOT, 'out/demo-screenshots')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
let text = '';
const served = new Promise<string>((res, rej) => {
  demo.stdout.on('data', (d: Buffer) => {
    process.stdout.write(d);
    text += String(d);
    if (/site commands:/.test(text)) res(text);
  });
  demo.on('exit', (code) => rej(new Error(`demo exited with ${code} before serving`)));
});
const stop = () => {
  try {
    process.kill(-demo.pid!, 'SIGINT');
  } catch {
    // already gone
  }
};
process.on('exit', stop);

const block = await served;
const coord = /coordinator console\s+(\S+)\/\s+sign in with the lead token (\S+)/.exec(block);
const sites = [...block.matchAll(/^\s+(.+?) console\s+(http:\/\/\S+?)\/?\s+token (\S+) \(from (\S+)\)$/gm)].map((m) => ({
  name: m[1],
  url: m[2].replace(/\/$/, ''),
  token: m[3],
  dataDir: dirname(m[4]),
}));
if (!coord || sites.length === 0) throw new Error('could not read the console URLs from the demo output');
const study = /lead status (study-[\w-]+)/.exec(block)?.[1];

// The STS example patients have one scan each: give the first site longitudinal twins to show.
const imp = spawnSync(process.execPath, [BIN, 'site', 'import', join(ROOT, 'examples/twin-longitudinal'), '--data-dir', sites[0].dataDir], { encoding: 'utf8' });
if (imp.status !== 0) throw new Error(`import: ${imp.stderr}`);

const browser = await launchBrowser();
const shot = async (page: Page, name: string) => {
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(OUT, `console-${name}.png`), fullPage: true });
  console.log(`wrote docs/console-${name}.png`);
};
const charts = (page: Page) => page.waitForSelector('[data-chart][data-drawn]', { timeout: 20_000 }).catch(() => undefined);
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const lead = await ctx.newPage();
  await signIn(lead, coord[1], coord[2]);
  await shot(lead, 'coordinator-studies');
  if (study) {
    await lead.goto(`${coord[1]}/studies/${study}`);
    await charts(lead);
    await shot(lead, 'coordinator-study');
  }
  await lead.goto(`${coord[1]}/sites`);
  await shot(lead, 'coordinator-sites');
  await lead.goto(`${coord[1]}/audit`);
  await shot(lead, 'coordinator-audit');

  const sctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const site = await sctx.newPage();
  const s = sites[0];
  await signIn(site, s.url, s.token);
  await shot(site, 'site-overview');
  if (study) {
    await site.goto(`${s.url}/approvals/${study}`);
    await shot(site, 'site-manifest');
  }
  await site.goto(`${s.url}/audit`);
  await shot(site, 'site-audit');
  await site.goto(`${s.url}/it`);
  await shot(site, 'site-it');
  await site.goto(`${s.url}/twins?q=1.427681197108524E%2B18`);
  await site.locator('main table tbody tr a').first().click();
  await charts(site);
  await shot(site, 'site-twin');
  await site.goto(`${s.url}/twins?q=STS`);
  await site.locator('main table tbody tr a').first().click();
  await site.waitForSelector('img[src$="gradcam.png"]', { timeout: 60_000 }).catch(() => undefined);
  await site.waitForTimeout(3000);
  await shot(site, 'site-gradcam');
} finally {
  await browser.close();
  stop();
}
