/**
 * The importer against decompression bombs and oversized headers (security review "Low 10"):
 * outcome, time and peak memory per file, each file read in a fresh node process.
 *
 *   node shared/dist/bench/import-bomb.js [--root DIR] [--vmem-kib N] [--json]
 *
 * --root: the checkout whose shared/dist is measured (default: this one); point it at a build of
 * an older commit to compare before and after on the same files. --vmem-kib: `ulimit -v` of each
 * child (default 8000000, 7.6 GiB), so a reader that inflates everything cannot exhaust the
 * machine. "peak RSS +" is process.resourceUsage().maxRSS minus the RSS just before the read.
 * Progress goes to stderr; with --json the last stdout line is one JSON array.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipOneMember, niftiHeader, nrrdGzHeader, readInChild, type NiftiHeaderSpec } from '../imaging/bombs.js';

const MiB = 2 ** 20;
const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const log = (msg: string) => process.stderr.write(`[bench:import-bomb] ${msg}\n`);

// Single-member gzip throughout (what gzip and nibabel write), so every reader inflates all of it.
const nii = (dims: number[], datatype: number, bitpix: number, zeros: number) => () => gzipOneMember(niftiHeader({ dims, datatype, bitpix } satisfies NiftiHeaderSpec), zeros);
interface Case {
  name: string;
  make: () => Promise<Buffer>;
  module: string;
  fn: string;
}
const CASES: Case[] = [
  { name: 'finding: 1024x1024x512 uint8, 512 MiB zeros', make: nii([1024, 1024, 512], 2, 8, 512 * MiB), module: 'imaging/index.js', fn: 'readNiftiImage' },
  { name: 'same, legacy readNifti (demo data path)', make: nii([1024, 1024, 512], 2, 8, 512 * MiB), module: 'data/nifti.js', fn: 'readNifti' },
  { name: 'header 2048x2048x512 int16, 960 MiB zeros', make: nii([2048, 2048, 512], 4, 16, 960 * MiB), module: 'imaging/index.js', fn: 'readNiftiImage' },
  { name: 'header 1024x1024x255 float32, 1020 MiB zeros', make: nii([1024, 1024, 255], 16, 32, 1020 * MiB), module: 'imaging/index.js', fn: 'readNiftiImage' },
  {
    name: 'NRRD gzip 2048x2048x512 short, 512 MiB zeros',
    make: async () => {
      const h = nrrdGzHeader([2048, 2048, 512], 'short');
      return Buffer.concat([h, await gzipOneMember(new Uint8Array(0), 512 * MiB)]);
    },
    module: 'imaging/index.js',
    fn: 'readNrrdImage',
  },
  { name: 'mask 128x128x128 uint8, all zero (legit)', make: nii([128, 128, 128], 2, 8, 2 * MiB), module: 'imaging/index.js', fn: 'readNiftiImage' },
  { name: 'mask 512x512x300 uint8, all zero (legit)', make: nii([512, 512, 300], 2, 8, 512 * 512 * 300), module: 'imaging/index.js', fn: 'readNiftiImage' },
  { name: 'mask 1024x1024x256 uint8, all zero (at the voxel cap)', make: nii([1024, 1024, 256], 2, 8, 256 * MiB), module: 'imaging/index.js', fn: 'readNiftiImage' },
];

async function main(): Promise<void> {
  const root = resolve(arg('--root') ?? fileURLToPath(new URL('../../..', import.meta.url)));
  const vmem = Number(arg('--vmem-kib') ?? 8_000_000);
  const json = process.argv.includes('--json');
  const dir = mkdtempSync(join(tmpdir(), 'twf-bench-bombs-'));
  const rows: { name: string; fileKiB: number; outcome: string; s: number; growthMiB: number }[] = [];
  try {
    for (const c of CASES) {
      const b = await c.make();
      const file = join(dir, c.fn === 'readNrrdImage' ? 'f.nrrd' : 'f.nii.gz');
      writeFileSync(file, b);
      log(`${c.name} (${(b.length / 1024).toFixed(0)} KiB)`);
      const url = new URL(`file://${join(root, 'shared/dist', c.module)}`).href;
      let r: { outcome: string; s: number; growthMiB: number };
      try {
        const c2 = await readInChild(url, c.fn, file, vmem);
        r = { outcome: c2.code === 'none' ? c2.message : c2.code === 'thrown' ? c2.message.slice(0, 60) : c2.code, s: c2.ms / 1000, growthMiB: c2.growthMiB };
      } catch (e) {
        r = {
          outcome: `child died: ${String((e as Error).message)
            .split('\n')[0]
            .slice(0, 50)}`,
          s: NaN,
          growthMiB: NaN,
        };
      }
      rows.push({ name: c.name, fileKiB: b.length / 1024, ...r });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const header = ['file', 'on disk', 'outcome', 'seconds', 'peak RSS +'];
  const cells = rows.map((r) => [r.name, `${r.fileKiB.toFixed(0)} KiB`, r.outcome, r.s.toFixed(2), `${r.growthMiB.toFixed(0)} MiB`]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 || i === 2 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
  console.log(`Import limits against bombs: ${root}/shared/dist (node ${process.version}, ulimit -v ${vmem} KiB per file)`);
  console.log(line(header));
  for (const c of cells) console.log(line(c));
  if (json) console.log(JSON.stringify(rows));
}

await main();
