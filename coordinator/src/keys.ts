import { KEY_HANDOUT_KIND, WireError, keyHandoutFields, type BodyOf, type Envelope, type StudyManifest } from '@twinfed/protocols';
import { decodeBody, fromB64, verifyStatement } from '@twinfed/shared/crypto/index';
import { heParamsDigest, type HeParams } from '@twinfed/shared/he/index';
import { activeJoined, activeRoster, manifestOfRow, parseList, requireStudyId, studyRow, type EngineContext, type HandlerResult, type StudyRow } from './context.js';
import type { KeyEpochRow } from './store/index.js';

export type { KeyEpochRow } from './store/index.js';

/**
 * Study-key epochs. The coordinator never holds a study key: it asks a key dealer — the first
 * connected, joined site in the manifest's `keyDealers` order — to create one and seal it to
 * the roster's X25519 keys, then relays the sealed boxes. The dealer signs the handout with its
 * roster key; recipients check that signature, so what the coordinator relays is what the dealer
 * made. A new epoch (a fresh key) is dealt when the manifest changes or a site is excluded
 * (evicted, withdrawn, revoked), so a site that left cannot read later rounds.
 */
export class StudyKeys {
  constructor(
    private readonly ctx: EngineContext,
    private readonly received: (env: Envelope, detail?: string) => HandlerResult['entry'],
  ) {}

  latest(studyId: string): KeyEpochRow | undefined {
    return this.ctx.store.latestEpoch(studyId);
  }

  /** The current epoch when its key has been dealt and still fits the study (manifest, active roster). */
  current(st: StudyRow, m: StudyManifest): KeyEpochRow | null {
    const e = this.latest(st.studyId);
    if (!e || e.dealtAtMs === null || this.needsNewEpoch(st, m, e)) return null;
    return e;
  }

  private needsNewEpoch(st: StudyRow, m: StudyManifest, e: KeyEpochRow): boolean {
    if (e.manifestHash !== st.manifestHash) return true;
    const active = new Set(activeRoster(this.ctx.store, st, m));
    return parseList(e.recipientsJson).some((id) => !active.has(id));
  }

  /** First dealer in the manifest's order that is joined, active and connected, after `after` (wrapping) when given. */
  private pickDealer(st: StudyRow, m: StudyManifest, after: string | null): string | null {
    const ready = new Set(
      activeJoined(this.ctx.store, st)
        .map((r) => r.siteId)
        .filter((id) => this.ctx.online(id)),
    );
    const order = m.keyDealers;
    const start = after === null ? 0 : order.indexOf(after) + 1;
    for (let k = 0; k < order.length; k++) {
      const id = order[(start + k) % order.length];
      if (ready.has(id)) return id;
    }
    return null;
  }

  /** The key state nextAction() reads: no fitting epoch, one requested, or one dealt. */
  state(st: StudyRow, m: StudyManifest): { state: 'new' } | { state: 'pending'; dealer: string; dealerOnline: boolean; requestedAtMs: number } | { state: 'current'; delivered: string[] } {
    const e = this.latest(st.studyId);
    if (!e || this.needsNewEpoch(st, m, e)) return { state: 'new' };
    if (e.dealtAtMs === null) return { state: 'pending', dealer: e.dealer, dealerOnline: this.ctx.online(e.dealer), requestedAtMs: e.requestedAtMs };
    return { state: 'current', delivered: [...this.delivered(st.studyId, e.epoch)] };
  }

  /** The dealer nextAction() would ask: first joined, connected site in the dealer order (after the pending dealer, if any). */
  nextDealer(st: StudyRow, m: StudyManifest): string | null {
    const e = this.latest(st.studyId);
    if (!e || this.needsNewEpoch(st, m, e)) return this.pickDealer(st, m, null);
    if (e.dealtAtMs !== null) return null;
    const next = this.pickDealer(st, m, e.dealer);
    return next === e.dealer && !this.ctx.online(e.dealer) ? null : next;
  }

  /** Requests a new epoch from `dealer` (the check that one is needed is repeated inside the transaction). */
  requestEpoch(st: StudyRow, m: StudyManifest, dealer: string): void {
    const now = this.ctx.now();
    const recipients = activeRoster(this.ctx.store, st, m);
    const epoch = this.ctx.store.transaction((tx) => {
      const e = tx.latestEpoch(st.studyId);
      const study = tx.study(st.studyId);
      if (!study || study.state !== 'running' || study.manifestHash !== st.manifestHash) return null;
      if (e && !this.needsNewEpoch(st, m, e)) return null;
      const next = (e?.epoch ?? 0) + 1;
      tx.insertEpoch({ studyId: st.studyId, epoch: next, manifestHash: st.manifestHash, dealer, recipientsJson: JSON.stringify(recipients), requestedAtMs: now });
      tx.updateStudy(st.studyId, { keyEpoch: next });
      this.ctx.audit.append({
        actor: this.ctx.coordinatorId,
        action: 'keys.requested',
        studyId: st.studyId,
        peer: dealer,
        detail: `epoch ${next} for ${recipients.join(',')}${e ? ` (replaces epoch ${e.epoch})` : ''}`,
      });
      return next;
    });
    if (epoch !== null) this.request(st, m, epoch, dealer, recipients);
  }

  /** Gives the pending epoch to another dealer (the previous one went away or did not answer in time). */
  replaceDealer(st: StudyRow, m: StudyManifest, next: string): void {
    const now = this.ctx.now();
    const e = this.ctx.store.transaction((tx) => {
      const e = tx.latestEpoch(st.studyId);
      if (!e || e.dealtAtMs !== null) return null;
      tx.updateEpoch(st.studyId, e.epoch, { dealer: next, requestedAtMs: now });
      this.ctx.audit.append({
        actor: this.ctx.coordinatorId,
        action: 'keys.dealer_replaced',
        studyId: st.studyId,
        peer: next,
        detail: `epoch ${e.epoch}: ${e.dealer} did not deal within ${Math.round(this.ctx.opts.dealerTimeoutMs / 1000)} s or went offline`,
      });
      return e;
    });
    if (e) this.request(st, m, e.epoch, next, parseList(e.recipientsJson));
  }

  /** Re-sends a pending request to a dealer that just (re)connected. */
  resendTo(st: StudyRow, m: StudyManifest, siteId: string): void {
    const e = this.latest(st.studyId);
    if (e && e.dealtAtMs === null && e.dealer === siteId && e.manifestHash === st.manifestHash) this.request(st, m, e.epoch, siteId, parseList(e.recipientsJson));
  }

  private request(st: StudyRow, m: StudyManifest, epoch: number, dealer: string, recipients: string[]): void {
    this.ctx.send(dealer, 'keys.request', st.studyId, null, { epoch, manifestHash: st.manifestHash, encryption: m.encryption, recipients });
  }

  /** keys.sealed: accepted only from the asked dealer, for the asked recipients, with a handout signature that verifies under the dealer's roster key. */
  onSealed(env: Envelope): HandlerResult {
    const h = env.header;
    const b: BodyOf['keys.sealed'] = decodeBody(env, 'keys.sealed');
    const st = studyRow(this.ctx.store, requireStudyId(h.studyId));
    const m = manifestOfRow(st);
    const e = this.ctx.store.epoch(st.studyId, b.epoch);
    if (!e || e.dealer !== h.senderId) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} was not asked to deal epoch ${b.epoch} of ${st.studyId}`);
    if (e.dealtAtMs !== null) throw new WireError('TWF_E_DUPLICATE_CHUNK', `epoch ${b.epoch} was already dealt`);
    if (b.manifestHash !== st.manifestHash || e.manifestHash !== st.manifestHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', 'handout for another manifest version');
    if (b.heParamsDigest !== heParamsDigest(m.encryption as HeParams)) throw new WireError('TWF_E_UPDATE_SHAPE', 'sealed key is for other encryption parameters');
    const asked = parseList(e.recipientsJson);
    const got = b.recipients.map((r) => r.siteId);
    if (got.length !== asked.length || [...got].sort().join(',') !== [...asked].sort().join(',')) throw new WireError('TWF_E_KEY_HANDOUT', `sealed for ${got.join(',')}, asked for ${asked.join(',')}`);
    const dealerKey = m.participants.find((p) => p.siteId === h.senderId)!.ed25519PublicKey;
    const fields = keyHandoutFields({ studyId: st.studyId, manifestHash: b.manifestHash, epoch: b.epoch, dealerSiteId: h.senderId, recipients: got, keyCommitment: b.keyCommitment });
    if (!verifyStatement(KEY_HANDOUT_KIND, fields, b.signature, fromB64(dealerKey))) throw new WireError('TWF_E_KEY_HANDOUT', "handout signature does not verify under the dealer's roster key");
    const now = this.ctx.now();
    const entry = this.ctx.store.transaction((tx) => {
      const again = tx.epoch(st.studyId, b.epoch);
      if (!again || again.dealer !== h.senderId || again.dealtAtMs !== null) throw new WireError('TWF_E_DUPLICATE_CHUNK', `epoch ${b.epoch} was already dealt or reassigned`);
      for (const r of b.recipients) {
        tx.insertSealedKey({ studyId: st.studyId, epoch: b.epoch, siteId: r.siteId, sealedKey: r.sealedKey, deliveredAtMs: r.siteId === h.senderId ? now : null });
      }
      tx.updateEpoch(st.studyId, b.epoch, { handoutJson: JSON.stringify({ keyCommitment: b.keyCommitment, signature: b.signature, heParamsDigest: b.heParamsDigest }), dealtAtMs: now });
      tx.updateStudy(st.studyId, { keyDealer: h.senderId });
      return this.received(env, `epoch ${b.epoch} sealed for ${got.join(',')}, commitment ${b.keyCommitment.slice(0, 16)}`);
    });
    return { entry, info: { stored: got.length } };
  }

  /** Sends the current epoch's sealed key to every joined, connected recipient that has not had it (or to `only`, again). */
  deliver(st: StudyRow, m: StudyManifest, only?: string): void {
    const e = this.current(st, m);
    if (!e) return;
    const handout = JSON.parse(e.handoutJson!) as { keyCommitment: string; signature: string; heParamsDigest: string };
    const recipients = parseList(e.recipientsJson);
    const joined = new Set(activeJoined(this.ctx.store, st).map((r) => r.siteId));
    const rows = this.ctx.store.sealedKeys(st.studyId, e.epoch, only ? { siteId: only } : 'undelivered');
    for (const r of rows) {
      if (!joined.has(r.siteId) || !this.ctx.online(r.siteId) || r.siteId === e.dealer) continue;
      const sent = this.ctx.send(r.siteId, 'keys.deliver', st.studyId, null, {
        epoch: e.epoch,
        manifestHash: e.manifestHash,
        dealerSiteId: e.dealer,
        heParamsDigest: handout.heParamsDigest,
        keyCommitment: handout.keyCommitment,
        recipients: [...recipients].sort(),
        signature: handout.signature,
        sealedKey: r.sealedKey,
      });
      if (sent && r.deliveredAtMs === null) {
        this.ctx.store.markDelivered(st.studyId, e.epoch, r.siteId, this.ctx.now());
      }
    }
  }

  /** Sites that were sent the key of `epoch`. */
  delivered(studyId: string, epoch: number): Set<string> {
    return new Set(this.ctx.store.deliveredKeySites(studyId, epoch));
  }

  /** Epochs whose key a site was given (it may ask for those rounds' aggregates). */
  epochsOf(studyId: string, siteId: string): Set<number> {
    return new Set(this.ctx.store.sealedKeysOfSite(studyId, siteId).map((r) => r.epoch));
  }
}
