import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unpackFrames } from '@twinfed/protocols';
import { addCiphertexts } from '@twinfed/shared/he/index';
import { FakeSite, Lab, type LabOptions } from '../testing.js';

/**
 * The running sums live on aggregation workers and are lost with the process; the stored chunks
 * are the record. A coordinator restarted (a new engine on the same database: what a kill -9
 * leaves) at the two instants that matter — during the upload phase, and after the survivors are
 * fixed but before the sums are written — publishes the aggregate of exactly the survivors'
 * chunks: bit for bit the serial sum of what they uploaded. (test/src/resume.test.ts kills a real
 * coordinator process with SIGKILL and decrypts the result.)
 */
const MODEL = { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 8, depth: 2, size: 48, initSeed: 1 }; // 29,330 parameters: 8 ciphertexts

type Chunk = { body: Uint8Array; meta: Record<string, string | number | boolean> };

/** The reference: each index's ciphertexts added one after the other, site by site. */
function serialSum(he: FakeSite['he'], chunks: Chunk[][]): Uint8Array[] {
  return chunks[0].map((_, i) => chunks.reduce<Uint8Array | null>((acc, c) => addCiphertexts(he, acc, c[i].body), null)!);
}

function published(s: FakeSite): Uint8Array[] {
  return unpackFrames(s.take('round.aggregate').body).slice(1);
}

const same = (a: Uint8Array[], b: Uint8Array[]) => a.length === b.length && a.every((x, i) => Buffer.compare(Buffer.from(x), Buffer.from(b[i])) === 0);

async function setUp(options: LabOptions) {
  const lab = await Lab.create(options);
  const sites: FakeSite[] = [];
  for (let i = 0; i < 4; i++) sites.push(await lab.site(`H${i + 1}`));
  const studyId = await lab.study(sites, { model: MODEL, minSites: 3 });
  for (const s of sites) await s.setup();
  const chunks = sites.map((s) => s.prepare(1));
  assert.equal(chunks[0].length, 8);
  return { lab, sites, studyId, chunks };
}

async function reconnectAll(lab: Lab, sites: FakeSite[]): Promise<void> {
  for (const s of sites) {
    s.inbox.length = 0;
    await s.connect();
  }
}

const dirs: string[] = [];
const variants: [string, () => LabOptions][] = [
  [
    'chunks in chunk logs',
    () => {
      const chunkDir = mkdtempSync(join(tmpdir(), 'twf-chunks-'));
      dirs.push(chunkDir);
      return { chunkDir, aggregationWorkers: 2 };
    },
  ],
  ['chunks in their rows', () => ({ aggregationWorkers: 2 })],
];

describe('aggregation workers: crash safety of the running sums', () => {
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  for (const [name, options] of variants) {
    it(`${name}: restarted mid-upload, the sums are rebuilt from the stored chunks: every chunk once, bit for bit`, async () => {
      const o = options();
      const { lab, sites, studyId, chunks } = await setUp(o);
      for (const c of [...chunks[0], ...chunks[1], ...chunks[2].slice(0, 3)]) assert.ok((await sites[chunks.findIndex((x) => x.includes(c))].send('update.chunk', studyId, 1, c.body, c.meta)).ok);
      await lab.engine.close();
      // A coordinator of the previous version kept running sums in the accumulators table during the
      // upload phase: one is left here (a wrong one) and must not survive the restart.
      lab.db.$client.prepare('insert into accumulators (study_id, round, idx, ct, contributions) values (?, 1, 0, ?, 1)').run(studyId, Buffer.from(chunks[3][0].body));
      lab.restart(); // the workers' sums are gone; the rows (and logs) are not
      await reconnectAll(lab, sites);
      // Each is told what the coordinator holds: a re-sent chunk would be refused, never counted twice.
      const dup = await sites[2].send('update.chunk', studyId, 1, chunks[2][0].body, chunks[2][0].meta);
      assert.equal(!dup.ok && dup.code, 'TWF_E_DUPLICATE_CHUNK');
      for (const c of [...chunks[2].slice(3), ...chunks[3]]) assert.ok((await sites[chunks.findIndex((x) => x.includes(c))].send('update.chunk', studyId, 1, c.body, c.meta)).ok);
      for (const s of sites) await s.sign(1);
      for (const s of sites) await s.reveal(1);
      assert.equal(lab.engine.roundStatus(studyId, 1).state, 'closed');
      assert.ok(same(published(sites[0]), serialSum(sites[0].he, chunks)), 'the published aggregate is the serial sum of the four uploads');
      assert.match(lab.db.$client.prepare("select detail from audit_log where action = 'round.summed'").pluck().get() as string, /rebuilt from the stored chunks/);
      if (o.chunkDir) assert.deepEqual(readdirSync(o.chunkDir), [], 'the chunk logs are deleted once the sums are written');
      assert.equal(lab.db.$client.prepare('select count(*) from update_chunks').pluck().get() as number, 0);
      await lab.engine.close();
    });

    it(`${name}: restarted after the survivors are fixed, before the sums are written: the abandoned partial upload stays out, the rest counts once`, async () => {
      const o = options();
      const { lab, sites, studyId, chunks } = await setUp(o);
      for (let k = 0; k < 3; k++) for (const c of chunks[k]) assert.ok((await sites[k].send('update.chunk', studyId, 1, c.body, c.meta)).ok);
      for (const c of chunks[3].slice(0, 5)) assert.ok((await sites[3].send('update.chunk', studyId, 1, c.body, c.meta)).ok); // H4 stops after 5 of 8
      // The crash comes while the sums are being taken: they never reach the database.
      lab.engine.sums.take = () => new Promise(() => undefined);
      lab.clock.nowMs += 11_000; // past the upload deadline: survivors H1-H3, H4's partial upload abandoned
      lab.engine.tick();
      for (let i = 0; i < 200 && lab.engine.roundStatus(studyId, 1).phase !== 'consistency'; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(lab.engine.roundStatus(studyId, 1).phase, 'consistency');
      assert.equal(lab.db.$client.prepare('select count(*) from accumulators').pluck().get() as number, 0, 'no sums written yet');
      await lab.engine.close();
      lab.restart();
      await reconnectAll(lab, sites);
      await lab.engine.idle();
      for (const s of sites.slice(0, 3)) await s.sign(1);
      for (const s of sites.slice(0, 3)) await s.reveal(1);
      assert.equal(lab.engine.roundStatus(studyId, 1).state, 'closed');
      assert.ok(same(published(sites[0]), serialSum(sites[0].he, chunks.slice(0, 3))), "the aggregate holds H1-H3's uploads and nothing of H4's");
      assert.match(lab.db.$client.prepare("select detail from audit_log where action = 'round.summed'").pluck().get() as string, /rebuilt from the stored chunks; 1 partial upload/);
      await lab.engine.close();
    });

    it(`${name}: no crash: an abandoned partial upload is subtracted from the workers' sums`, async () => {
      const o = options();
      const { lab, sites, studyId, chunks } = await setUp(o);
      for (let k = 0; k < 3; k++) for (const c of chunks[k]) assert.ok((await sites[k].send('update.chunk', studyId, 1, c.body, c.meta)).ok);
      for (const c of chunks[3].slice(0, 5)) assert.ok((await sites[3].send('update.chunk', studyId, 1, c.body, c.meta)).ok);
      await lab.advance(11_000);
      for (const s of sites.slice(0, 3)) await s.sign(1);
      for (const s of sites.slice(0, 3)) await s.reveal(1);
      assert.equal(lab.engine.roundStatus(studyId, 1).state, 'closed');
      assert.ok(same(published(sites[1]), serialSum(sites[0].he, chunks.slice(0, 3))));
      assert.match(lab.db.$client.prepare("select detail from audit_log where action = 'round.summed'").pluck().get() as string, /from 2 aggregation workers; 1 partial upload\(s\) left out/);
      await lab.engine.close();
    });
  }
});
