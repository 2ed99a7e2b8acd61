import { join } from 'node:path';
import type { Ack, BodyOf, Envelope, SegmentationSpec, StudyManifest } from '@twinfed/protocols';
import type { Coordinator, SiteTransport } from '@twinfed/coordinator';
import { SiteNode, loadSiteConfig } from '@twinfed/site-node';
import { RawSite, createAndStart, enrolNewSite, realSite, startCoordinator, tinySpec, waitFor, type DeltaLog } from '../harness.js';
import { RawParticipant } from '../raw-protocol.js';
import { failed, type AttackOutcome } from './types.js';

/**
 * What the protocol and secure-aggregation attacks share: a "lab" (a coordinator, real site
 * nodes and hand-driven participants on one study), a way to play a hand-driven participant's
 * round, and small readers of the sites' own records. Every attack opens its own lab in its own
 * folder and closes it, whatever happens.
 */

/** Real sites: three PET patients each at 16x16 (about 77 training slices), the real U-Net trainer. */
const REAL_SITES = [
  ['A', ['STS_004', 'STS_005', 'STS_006'], ['STS_006']],
  ['B', ['STS_014', 'STS_015', 'STS_016'], ['STS_016']],
  ['C', ['STS_024', 'STS_025', 'STS_026'], ['STS_026']],
] as const;

export interface Lab {
  c: Coordinator;
  url: string;
  studyId: string;
  manifest: StudyManifest;
  manifestHash: string;
  /** Real site nodes (not connected until the lab connects them; officers approve with approveAll). */
  nodes: SiteNode[];
  /** Each real site's plaintext update per round (recorded by a spy around its trainer). */
  deltas: DeltaLog[];
  /** Hand-driven participants, connected, said hello, saw the announcement; not joined. */
  raws: RawParticipant[];
  rawDirs: string[];
  close(): Promise<void>;
}

export interface LabOptions {
  real?: number;
  raw?: number;
  /** tinySpec overrides (rounds 1, minSites 3 unless given). */
  spec?: Partial<SegmentationSpec>;
  /** U-Net base width: 4 (default, 1,650 parameters, one ciphertext) or 8 (6,434 parameters, two ciphertexts). */
  modelBase?: number;
  coordinator?: Record<string, unknown>;
  /**
   * Key-dealer order. 'raw' (default): the first raw site deals, and only when the attack says so,
   * so the first round opens with every site that joined before. 'real': the real sites deal.
   */
  dealers?: 'raw' | 'real' | ((raw: string[], real: string[]) => string[]);
}

/** A coordinator on loopback, real and hand-driven sites enrolled, a started study with all of them in its roster. */
export async function openLab(dir: string, o: LabOptions = {}): Promise<Lab> {
  const { c, url } = await startCoordinator(join(dir, 'coordinator'), { joinSettleMs: 300, ...o.coordinator });
  const nodes: SiteNode[] = [];
  const deltas: DeltaLog[] = [];
  const sockets: RawSite[] = [];
  const raws: RawParticipant[] = [];
  const close = async () => {
    for (const p of raws) p.raw.close();
    for (const s of sockets) s.close();
    for (const n of nodes) await n.close().catch(() => undefined);
    await c.close().catch(() => undefined);
  };
  try {
    for (let i = 0; i < (o.real ?? 0); i++) {
      const [name, patients, val] = REAL_SITES[i];
      const r = await realSite(url, join(dir, `real-${name}`), `Hospital ${name}`, [...patients], [...val]);
      nodes.push(r.node);
      deltas.push(r.deltas);
    }
    const rawDirs: string[] = [];
    for (let i = 0; i < (o.raw ?? 0); i++) {
      const d = join(dir, `raw-${i}`);
      await enrolNewSite(url, d, `Hand-driven site ${i}`);
      rawDirs.push(d);
    }
    const rawIds = rawDirs.map((d) => loadSiteConfig(d).siteId);
    const realIds = nodes.map((n) => n.siteId);
    const dealers = o.dealers ?? 'raw';
    const keyDealers = typeof dealers === 'function' ? dealers(rawIds, realIds) : dealers === 'raw' ? [...rawIds, ...realIds] : [...realIds, ...rawIds];
    const spec = tinySpec({ rounds: 1, minSites: 3, ...o.spec });
    if (o.modelBase) spec.model = { ...spec.model, base: o.modelBase };
    const s = await createAndStart(url, spec, { sites: [...rawIds, ...realIds], keyDealers });
    for (const d of rawDirs) {
      const raw = await RawSite.create(url, d);
      sockets.push(raw);
      await raw.connected();
      expectOk(await raw.hello(), 'hello');
      await raw.next('study.announce');
      raws.push(await new RawParticipant(raw, s.manifest, s.manifestHash).init());
    }
    for (const n of nodes) n.connect();
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).length === 1), 'the announcement at every real site', 20_000, 20);
    return { c, url, ...s, nodes, deltas, raws, rawDirs, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Every real site's officer approves the manifest (the lab's, or the one given); the node then joins by itself. */
export function approveAll(lab: Lab, manifestHash = lab.manifestHash, nodes = lab.nodes): void {
  for (const n of nodes) SiteNode.approve(n.db, n.audit, lab.studyId, `officer of ${n.config.siteName}`, manifestHash);
}

/**
 * The usual start: raw sites join (declaring `samples[i]` training samples, 100 by default),
 * the real sites' officers approve, and once every roster site has joined the first raw site
 * deals the study key and the other raw sites take theirs. The first round opens with all of them.
 */
export async function joinAll(lab: Lab, samples: number[] = []): Promise<void> {
  for (const [i, p] of lab.raws.entries()) expectOk(await p.join(samples[i] ?? 100), 'study.join');
  approveAll(lab);
  const all = lab.raws.length + lab.nodes.length;
  await waitFor(() => lab.c.engine.studyStatus(lab.studyId).joined.length === all, 'every roster site joined', 20_000, 20);
  expectOk((await lab.raws[0].deal()).ack, 'keys.sealed');
  for (const p of lab.raws.slice(1)) await p.acceptKey();
}

export const jsonBody = <T>(env: Envelope): T => JSON.parse(Buffer.from(env.body).toString('utf8')) as T;

/** The round.start of `round` (older ones in the inbox are dropped). */
export async function startOf(p: RawParticipant, round: number, timeoutMs = 30_000): Promise<BodyOf['round.start']> {
  for (;;) {
    const env = await p.raw.next('round.start', timeoutMs);
    if (env.header.round === round) return jsonBody(env);
  }
}

/** Plays one round honestly as a hand-driven participant: mask set-up, masked encrypted upload, survivor signature, reveal. */
export async function playRound(p: RawParticipant, round: number, delta: Float32Array, n: number): Promise<void> {
  const start = await startOf(p, round);
  expectOk(await p.sendSetup(round, start), 'mask.setup');
  for (const a of await p.upload(round, delta, n)) expectOk(a, 'update.chunk');
  expectOk((await p.sign(round)).ack, 'mask.consistency');
  expectOk(await p.reveal(round), 'mask.unmask');
}

/** A small, deterministic update of the manifest's length (what an honest hand-driven site sends). */
export function smallDelta(m: StudyManifest, k: number): Float32Array {
  return Float32Array.from({ length: m.updateLength }, (_, i) => Math.sin(0.37 * i + k) * 0.01);
}

/** Every element at +B: the largest update a clipped site can send. */
export function atBound(m: StudyManifest): Float32Array {
  return new Float32Array(m.updateLength).fill(m.training.clipBound);
}

/** Audit entries of a real site with this action (and, when given, whose detail starts with `code`). */
export function audited(node: SiteNode, action: string, code?: string) {
  return node.audit.entries().filter((e) => e.action === action && (code === undefined || (e.detail ?? '').startsWith(code)));
}

/** A real site's study key of one epoch, as stored in its database. */
export function keyOf(node: SiteNode, studyId: string, epoch: number): { secretKey: Buffer; keyCommitment: string; manifestHash: string } | undefined {
  return node.db.$client
    .prepare('select secret_key as secretKey, key_commitment as keyCommitment, manifest_hash as manifestHash from study_keys where study_id = ? and epoch = ?')
    .get(studyId, epoch) as never;
}

/** A real site's round_work row (null fields once wiped). */
export function workOf(node: SiteNode, studyId: string, round: number): { state: string; signedJson: string | null; revealedJson: string | null; keySetJson: string | null } | undefined {
  return node.db.$client
    .prepare('select state, signed_json as signedJson, revealed_json as revealedJson, key_set_json as keySetJson from round_work where study_id = ? and round = ?')
    .get(studyId, round) as never;
}

/**
 * Records every envelope the coordinator sends (what a malicious operator, or anyone on its
 * machine, can keep), and sends a recorded one again, byte for byte (`replay`).
 */
export function recordSent(c: Coordinator): { sent: { siteId: string; env: Envelope }[]; replay(siteId: string, env: Envelope): boolean } {
  const sent: { siteId: string; env: Envelope }[] = [];
  const t = (c.engine as unknown as { transport: SiteTransport }).transport;
  c.engine.attach({
    send: (siteId, env) => {
      sent.push({ siteId, env });
      return t.send(siteId, env);
    },
    isConnected: (siteId) => t.isConnected(siteId),
    disconnect: (siteId) => t.disconnect(siteId),
  });
  return { sent, replay: (siteId, env) => t.send(siteId, env) };
}

/** Records every envelope the coordinator receives from sites (before its checks). */
export function recordReceived(c: Coordinator): { siteId: string; raw: unknown }[] {
  const got: { siteId: string; raw: unknown }[] = [];
  const handle = c.engine.handle.bind(c.engine);
  c.engine.handle = (siteId, raw) => {
    got.push({ siteId, raw });
    return handle(siteId, raw);
  };
  return got;
}

/** Something the attack needed did not happen as the protocol says: reported as FAILED with what was seen. */
export class Unexpected extends Error {}

export function expect(cond: unknown, observed: string): asserts cond {
  if (!cond) throw new Unexpected(observed);
}

export function expectOk(a: Ack, what: string): void {
  expect(a.ok, `${what} was refused: ${JSON.stringify(a)}`);
}

/** True when the ack is a refusal with this code. */
export function refusedWith(a: Ack, code: string): boolean {
  return !a.ok && a.code === code;
}

/** Runs an attack body against a lab, turning Unexpected into FAILED, and always closes the lab. */
export async function inLab(open: () => Promise<Lab>, body: (lab: Lab) => Promise<AttackOutcome>, cleanup: () => void = () => undefined): Promise<AttackOutcome> {
  const lab = await open();
  try {
    return await body(lab);
  } catch (e) {
    if (e instanceof Unexpected) return failed(e.message);
    throw e;
  } finally {
    cleanup();
    await lab.close();
  }
}
