import {
  AggregateInfo,
  KEY_HANDOUT_KIND,
  MASK_SURVIVORS_KIND,
  keyHandoutFields,
  maskSurvivorsFields,
  unpackFrames,
  type Ack,
  type BodyOf,
  type Envelope,
  type StudyManifest,
} from '@twinfed/protocols';
import { fromB64, openSealed, sealTo, signStatement, toB64, verifyStatement } from '@twinfed/shared/crypto/index';
import {
  averageFromCentred,
  createHeContext,
  decryptSlots,
  encryptSlots,
  generateSecretKey,
  heParamsDigest,
  packLanes,
  packedLength,
  quantizeToZt,
  unpackLanes,
  type HeContext,
  type HeParams,
} from '@twinfed/shared/he/index';
import { buildMaskSetup, isKeyPair, maskInput, openShares, reconstructChecked, selfMaskCommitment, unmaskSum, type RoundContext, type RoundSecrets } from '@twinfed/shared/secagg/index';
import { studyKeyCommitment } from '@twinfed/site-node';
import type { RawSite } from './harness.js';

const body = <T>(env: Envelope) => JSON.parse(Buffer.from(env.body).toString('utf8')) as T;

interface RoundState {
  participants: string[];
  threshold: number;
  keyEpoch: number;
  baseVersion: number;
  secrets: RoundSecrets;
  shares: Map<string, { b: Uint8Array; s: Uint8Array }>;
  keySet: BodyOf['mask.peers']['keySet'];
  signed?: { keySet: string[]; survivors: string[] };
  ciphertexts?: Uint8Array[];
}

/**
 * A hand-driven participant speaking the whole protocol over a RawSite — dealer, key recipient,
 * secure aggregation — with the same library functions a site node uses, and hooks to deviate
 * from it (the red-team suite plays rogue sites with it). Every step waits for the coordinator's
 * message it answers.
 */
export class RawParticipant {
  readonly keys = new Map<number, Uint8Array>();
  readonly rounds = new Map<number, RoundState>();
  he!: HeContext;

  constructor(
    public raw: RawSite,
    readonly manifest: StudyManifest,
    readonly manifestHash: string,
  ) {}

  get siteId(): string {
    return this.raw.siteId;
  }

  ctx(round: number): RoundContext {
    return { studyId: this.manifest.studyId, manifestHash: this.manifestHash, round };
  }

  async init(): Promise<this> {
    this.he = await createHeContext(this.manifest.encryption as HeParams);
    return this;
  }

  async join(trainSamples = 100, valPatients = 2): Promise<Ack> {
    return this.raw.send('study.join', this.manifest.studyId, null, { manifestHash: this.manifestHash, trainSamples, valPatients });
  }

  /** Answers a pending keys.request as an honest dealer (seals to the roster keys, signs the handout). */
  async deal(timeoutMs = 10_000): Promise<{ epoch: number; sk: Uint8Array; ack: Ack }> {
    const req = body<BodyOf['keys.request']>(await this.raw.next('keys.request', timeoutMs));
    const sk = this.keys.get(req.epoch) ?? generateSecretKey(this.he);
    this.keys.set(req.epoch, sk);
    const keyCommitment = studyKeyCommitment(this.manifest.studyId, req.epoch, this.manifestHash, sk);
    const recipients = [...req.recipients].sort();
    const roster = new Map(this.manifest.participants.map((p) => [p.siteId, p]));
    const signature = signStatement(
      KEY_HANDOUT_KIND,
      keyHandoutFields({ studyId: this.manifest.studyId, manifestHash: this.manifestHash, epoch: req.epoch, dealerSiteId: this.siteId, recipients, keyCommitment }),
      this.raw.identity.ed25519SecretKey,
    );
    const ack = await this.raw.send('keys.sealed', this.manifest.studyId, null, {
      epoch: req.epoch,
      manifestHash: this.manifestHash,
      heParamsDigest: heParamsDigest(this.manifest.encryption as HeParams),
      keyCommitment,
      signature,
      recipients: recipients.map((r) => ({ siteId: r, sealedKey: toB64(sealTo(fromB64(roster.get(r)!.x25519PublicKey), sk)) })),
    });
    return { epoch: req.epoch, sk, ack };
  }

  /** Takes a keys.deliver, checking the dealer's signature and the commitment as a site node does. */
  async acceptKey(timeoutMs = 10_000): Promise<number> {
    const b = body<BodyOf['keys.deliver']>(await this.raw.next('keys.deliver', timeoutMs));
    const dealer = this.manifest.participants.find((p) => p.siteId === b.dealerSiteId);
    if (!dealer) throw new Error(`dealer ${b.dealerSiteId} not in the roster`);
    const ok = verifyStatement(
      KEY_HANDOUT_KIND,
      keyHandoutFields({ studyId: this.manifest.studyId, manifestHash: b.manifestHash, epoch: b.epoch, dealerSiteId: b.dealerSiteId, recipients: b.recipients, keyCommitment: b.keyCommitment }),
      b.signature,
      fromB64(dealer.ed25519PublicKey),
    );
    if (!ok) throw new Error('bad handout signature');
    const sk = openSealed(fromB64(b.sealedKey), this.raw.identity);
    if (studyKeyCommitment(this.manifest.studyId, b.epoch, this.manifestHash, sk) !== b.keyCommitment) throw new Error('key does not match commitment');
    this.keys.set(b.epoch, sk);
    return b.epoch;
  }

  /** Waits for round.start and sends an honest mask set-up. */
  async setup(timeoutMs = 30_000): Promise<{ round: number; start: BodyOf['round.start']; ack: Ack }> {
    const env = await this.raw.next('round.start', timeoutMs);
    const round = env.header.round!;
    const start = body<BodyOf['round.start']>(env);
    const ack = await this.sendSetup(round, start);
    return { round, start, ack };
  }

  async sendSetup(round: number, start: BodyOf['round.start']): Promise<Ack> {
    const ctx = this.ctx(round);
    const roster = new Map(this.manifest.participants.map((p) => [p.siteId, p]));
    const { body: setup, secrets, own } = await buildMaskSetup(ctx, this.siteId, start.participants, start.threshold, (p) => fromB64(roster.get(p)!.x25519PublicKey), this.raw.identity);
    this.rounds.set(round, {
      participants: start.participants,
      threshold: start.threshold,
      keyEpoch: start.keyEpoch,
      baseVersion: start.modelVersion,
      secrets,
      shares: new Map([[this.siteId, { b: own.bShare, s: own.sShare }]]),
      keySet: [],
    });
    return this.raw.send('mask.setup', this.manifest.studyId, round, setup);
  }

  /**
   * Waits for mask.peers, masks and encrypts `delta` (weight n), returns the ciphertexts without
   * sending them. `tamper` sees the quantised values (in Z_t) before masking, as a site node adds
   * its site-level DP noise there; a rogue changes them.
   */
  async prepareUpload(
    round: number,
    delta: Float32Array,
    n: number,
    timeoutMs = 30_000,
    tamper?: (q: Float64Array) => Float64Array,
  ): Promise<{ ciphertexts: Uint8Array[]; alreadyReceived: number[] }> {
    const peers = await this.acceptPeers(round, timeoutMs);
    const st = this.rounds.get(round)!;
    const q = quantizeToZt(delta, n, this.manifest.training.clipBound, this.manifest.encryption.precisionBits, this.he.plainModulus);
    if (tamper) q.values = tamper(q.values);
    const y = maskInput(
      this.ctx(round),
      this.he.plainModulus,
      this.siteId,
      st.secrets,
      packLanes(this.he, q.values),
      peers.keySet.filter((e) => e.siteId !== this.siteId).map((e) => ({ siteId: e.siteId, sPk: fromB64(e.sPk) })),
    );
    st.ciphertexts = encryptSlots(this.he, this.keys.get(st.keyEpoch)!, y).ciphertexts;
    return { ciphertexts: st.ciphertexts, alreadyReceived: peers.alreadyReceived };
  }

  /** Waits for mask.peers and opens the other participants' share boxes (what an upload needs before masking). */
  async acceptPeers(round: number, timeoutMs = 30_000): Promise<BodyOf['mask.peers']> {
    const peers = body<BodyOf['mask.peers']>(await this.raw.next('mask.peers', timeoutMs));
    const st = this.rounds.get(round)!;
    st.keySet = peers.keySet;
    const roster = new Map(this.manifest.participants.map((p) => [p.siteId, p]));
    for (const e of peers.keySet) {
      if (e.siteId === this.siteId || !e.box) continue;
      const sh = openShares(this.ctx(round), e.siteId, this.siteId, e.box, this.raw.identity.x25519SecretKey, fromB64(roster.get(e.siteId)!.x25519PublicKey));
      st.shares.set(e.siteId, { b: sh.bShare, s: sh.sShare });
    }
    return peers;
  }

  chunkMeta(round: number, index: number, count: number, n: number, over: Record<string, string | number | boolean> = {}) {
    const st = this.rounds.get(round)!;
    return { index, count, nSamples: n, length: this.manifest.updateLength, keyEpoch: st.keyEpoch, heParamsDigest: heParamsDigest(this.manifest.encryption as HeParams), ...over };
  }

  /** After a reconnect: waits for the re-sent mask.peers and sends the chunks the coordinator lacks, from the stored ciphertexts. */
  async resumeUpload(round: number, n: number, timeoutMs = 30_000): Promise<Ack[]> {
    const peers = body<BodyOf['mask.peers']>(await this.raw.next('mask.peers', timeoutMs));
    const cts = this.rounds.get(round)!.ciphertexts!;
    const acks: Ack[] = [];
    for (let i = 0; i < cts.length; i++) {
      if (peers.alreadyReceived.includes(i)) continue;
      acks.push(await this.raw.send('update.chunk', this.manifest.studyId, round, cts[i], this.chunkMeta(round, i, cts.length, n)));
    }
    return acks;
  }

  async upload(round: number, delta: Float32Array, n: number, timeoutMs = 30_000): Promise<Ack[]> {
    const { ciphertexts, alreadyReceived } = await this.prepareUpload(round, delta, n, timeoutMs);
    const acks: Ack[] = [];
    for (let i = 0; i < ciphertexts.length; i++) {
      if (alreadyReceived.includes(i)) continue;
      acks.push(await this.raw.send('update.chunk', this.manifest.studyId, round, ciphertexts[i], this.chunkMeta(round, i, ciphertexts.length, n)));
    }
    return acks;
  }

  /** Waits for mask.survivors and signs it. */
  async sign(round: number, timeoutMs = 30_000): Promise<{ survivors: string[]; ack: Ack }> {
    const b = body<BodyOf['mask.survivors']>(await this.raw.next('mask.survivors', timeoutMs));
    const st = this.rounds.get(round)!;
    st.signed = { keySet: b.keySet, survivors: b.survivors };
    const signature = signStatement(MASK_SURVIVORS_KIND, maskSurvivorsFields(this.ctx(round), b.keySet, b.survivors), this.raw.identity.ed25519SecretKey);
    return { survivors: b.survivors, ack: await this.raw.send('mask.consistency', this.manifest.studyId, round, { signature }) };
  }

  /** Waits for mask.reveal and reveals honestly (b of survivors, s of dropped sites). */
  async reveal(round: number, timeoutMs = 30_000): Promise<Ack> {
    const b = body<BodyOf['mask.reveal']>(await this.raw.next('mask.reveal', timeoutMs));
    const st = this.rounds.get(round)!;
    const dropped = b.keySet.filter((s) => !b.survivors.includes(s));
    return this.raw.send('mask.unmask', this.manifest.studyId, round, {
      bShares: b.survivors.map((of) => ({ of, share: toB64(st.shares.get(of)!.b) })),
      sShares: dropped.map((of) => ({ of, share: toB64(st.shares.get(of)!.s) })),
    });
  }

  /** Waits for the round's aggregate and unmasks it as a site node does; returns the average update. */
  async aggregate(round: number, timeoutMs = 30_000): Promise<{ avg: Float32Array; info: ReturnType<typeof AggregateInfo.parse> }> {
    let env: Envelope;
    for (;;) {
      env = await this.raw.next('round.aggregate', timeoutMs);
      if (env.header.round === round) break;
    }
    const frames = unpackFrames(env.body);
    const info = AggregateInfo.parse(JSON.parse(Buffer.from(frames[0]).toString('utf8')));
    const ctx = this.ctx(round);
    const entry = new Map(info.keySet.map((e) => [e.siteId, e]));
    const sharesOf = (k: 'bShares' | 'sShares', of: string) => info.reveals.flatMap((r) => r[k].filter((x) => x.of === of).map((x) => fromB64(x.share)));
    const survivors = [];
    for (const s of info.survivors)
      survivors.push({ siteId: s, b: (await reconstructChecked(sharesOf('bShares', s), info.threshold, (x) => selfMaskCommitment(ctx, s, x) === entry.get(s)!.bCommit))! });
    const dropped = [];
    for (const d of info.keySet.map((e) => e.siteId).filter((id) => !info.survivors.includes(id)))
      dropped.push({ siteId: d, sSk: (await reconstructChecked(sharesOf('sShares', d), info.threshold, (x) => isKeyPair(x, fromB64(entry.get(d)!.sPk))))! });
    const sums = decryptSlots(this.he, this.keys.get(info.keyEpoch)!, frames.slice(1), packedLength(this.he.params, info.length));
    unmaskSum(ctx, this.he.plainModulus, sums, survivors, dropped, new Map(info.survivors.map((s) => [s, fromB64(entry.get(s)!.sPk)])));
    const laneSums = unpackLanes(this.he, sums, info.length);
    return { avg: averageFromCentred(laneSums, info.totalSamples, this.manifest.training.clipBound, this.manifest.encryption.precisionBits), info };
  }
}

/** Reads a manifest announcement from a RawSite's inbox. */
export async function announced(raw: RawSite, timeoutMs = 10_000): Promise<{ manifest: StudyManifest; manifestHash: string }> {
  const b = body<BodyOf['study.announce']>(await raw.next('study.announce', timeoutMs));
  return { manifest: b.manifest, manifestHash: b.manifestHash };
}
