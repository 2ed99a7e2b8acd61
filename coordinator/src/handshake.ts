/**
 * How a site gets in, before it has an authenticated connection: one-time enrolment tokens,
 * enrolment (refusals audited coalesced), handshake challenges (single-use nonces) and their
 * verification. Owned by the engine, whose methods of the same names delegate here.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { HANDSHAKE_KIND, HandshakeAuthSchema, PROTOCOL_VERSION, WireError, handshakeFields, isCompatibleVersion, sha256Hex } from '@twinfed/protocols';
import { fromB64, toB64, verifyStatement } from '@twinfed/shared/crypto/index';
import { toWireError, type EngineContext } from './context.js';

/** Handshake nonces live this long (ms); a site asks for one right before it connects. */
const NONCE_TTL_MS = 60_000;
const MAX_NONCES = 10_000;

export class Handshakes {
  private readonly nonces = new Map<string, { siteId: string; expiresAtMs: number }>();
  /** Coalescing windows of audited enrolment refusals (see auditEnrolmentRefusal). */
  private readonly enrolmentRefusals = new Map<string, { windowStartMs: number; suppressed: number }>();

  constructor(
    private readonly ctx: EngineContext,
    /** The coordinator's Ed25519 public key, handed to each site it enrols. */
    private readonly coordinatorPublicKey: Uint8Array,
  ) {}

  issueEnrolmentToken(siteName: string, expiresInS: number): { token: string; siteName: string; expiresAt: string } {
    const token = randomBytes(24).toString('base64url');
    const expiresAtMs = this.ctx.now() + expiresInS * 1000;
    this.ctx.store.transaction((tx) => {
      tx.insertToken({ tokenHash: sha256Hex(token), siteName, expiresAtMs });
      this.ctx.audit.append({ actor: 'lead', action: 'enrolment.token_issued', detail: siteName });
    });
    return { token, siteName, expiresAt: new Date(expiresAtMs).toISOString() };
  }

  /**
   * Writes an enrolment refusal to the audit log, coalesced: the first refusal of a kind (code and
   * reason, per issued token; all unknown tokens share one kind) in a minute is a row, the rest
   * are counted and summed into the next row of that kind. A stranger cannot grow the audit log
   * by one row per junk request, and every refusal is still accounted for (and in
   * twinfed_enrolments_refused_total).
   */
  private auditEnrolmentRefusal(err: WireError, tokenHash: string, issued: boolean): void {
    this.ctx.metrics.enrolmentsRefused.inc({ code: err.code });
    const key = `${err.code}:${err.detail}:${issued ? tokenHash : 'unknown'}`;
    const now = this.ctx.now();
    const w = this.enrolmentRefusals.get(key);
    if (w && now - w.windowStartMs < 60_000) {
      w.suppressed++;
      return;
    }
    const more = w?.suppressed ? ` (+${w.suppressed} more like it in the minute before, not written one by one)` : '';
    this.ctx.audit.append({ actor: 'unknown', action: 'enrolment.refused', digest: tokenHash, detail: `${err.code}: ${err.detail}${more}` });
    if (this.enrolmentRefusals.size >= 1000) this.enrolmentRefusals.delete(this.enrolmentRefusals.keys().next().value!);
    this.enrolmentRefusals.set(key, { windowStartMs: now, suppressed: 0 });
  }

  /** Registers a site's public keys against a one-time token. A refusal is audited (outside the refused transaction). */
  enrol(req: { token: string; protocolVersion: string; ed25519PublicKey: string; x25519PublicKey: string }) {
    let issued = false;
    const refuse = (err: WireError): never => {
      this.auditEnrolmentRefusal(err, sha256Hex(req.token), issued);
      throw err;
    };
    if (!isCompatibleVersion(req.protocolVersion)) refuse(new WireError('TWF_E_PROTOCOL_VERSION', `site speaks ${req.protocolVersion}, coordinator ${PROTOCOL_VERSION}`));
    for (const k of [req.ed25519PublicKey, req.x25519PublicKey]) {
      if (fromB64(k).length !== 32) refuse(new WireError('TWF_E_BAD_REQUEST', 'public keys must be 32 bytes, base64'));
    }
    let refusal: WireError | null = null;
    const r = this.ctx.store.transaction((tx) => {
      const tok = tx.token(sha256Hex(req.token));
      issued = !!tok;
      if (!tok || tok.usedAtMs !== null || tok.expiresAtMs < this.ctx.now()) {
        refusal = new WireError('TWF_E_ENROLMENT_TOKEN', !tok ? 'unknown token' : tok.usedAtMs !== null ? 'already used' : 'expired');
        return null;
      }
      const siteId = `site-${randomUUID().slice(0, 8)}`;
      tx.insertSite({ siteId, siteName: tok.siteName, ed25519PublicKey: req.ed25519PublicKey, x25519PublicKey: req.x25519PublicKey, enrolledAtMs: this.ctx.now() });
      tx.useToken(tok.tokenHash, siteId, this.ctx.now());
      this.ctx.audit.append({ actor: siteId, action: 'site.enrolled', digest: sha256Hex(req.ed25519PublicKey + req.x25519PublicKey), detail: tok.siteName });
      return { siteId, siteName: tok.siteName, coordinatorId: this.ctx.coordinatorId, coordinatorPublicKey: toB64(this.coordinatorPublicKey), protocolVersion: PROTOCOL_VERSION };
    });
    if (!r) return refuse(refusal!);
    return r;
  }

  /** POST /api/handshake: a single-use nonce the site signs to open its socket. */
  issueChallenge(siteId: string): { nonce: string; coordinatorId: string; expiresAtMs: number; lastSeqSeen: number } {
    const now = this.ctx.now();
    if (this.nonces.size >= MAX_NONCES) for (const [k, v] of this.nonces) if (v.expiresAtMs < now || this.nonces.size >= MAX_NONCES) this.nonces.delete(k);
    const nonce = randomBytes(24).toString('base64url');
    const expiresAtMs = now + NONCE_TTL_MS;
    this.nonces.set(nonce, { siteId, expiresAtMs });
    return { nonce, coordinatorId: this.ctx.coordinatorId, expiresAtMs, lastSeqSeen: this.ctx.store.site(siteId)?.lastSeq ?? 0 };
  }

  /**
   * Checks a socket handshake: protocol version, a fresh nonce of ours (single use), an enrolled,
   * non-revoked site, and its Ed25519 signature over { coordinatorId, siteId, nonce }. Returns
   * the site id. Refusals are counted in metrics, not written to the audit log row by row.
   */
  authenticate(auth: unknown): string {
    try {
      const p = HandshakeAuthSchema.safeParse(auth);
      if (!p.success) {
        const v = (auth as { protocolVersion?: unknown } | null)?.protocolVersion;
        if (typeof v === 'string' && !isCompatibleVersion(v)) throw new WireError('TWF_E_PROTOCOL_VERSION', `site speaks ${v}, coordinator ${PROTOCOL_VERSION}`);
        throw new WireError('TWF_E_HANDSHAKE', 'auth needs siteId, protocolVersion, nonce and signature');
      }
      const a = p.data;
      if (!isCompatibleVersion(a.protocolVersion)) throw new WireError('TWF_E_PROTOCOL_VERSION', `site speaks ${a.protocolVersion}, coordinator ${PROTOCOL_VERSION}`);
      const n = this.nonces.get(a.nonce);
      this.nonces.delete(a.nonce);
      if (!n || n.siteId !== a.siteId || n.expiresAtMs < this.ctx.now()) throw new WireError('TWF_E_HANDSHAKE', 'unknown, used or expired nonce');
      const site = this.ctx.store.site(a.siteId);
      if (!site) throw new WireError('TWF_E_UNKNOWN_SITE', 'not enrolled');
      if (!verifyStatement(HANDSHAKE_KIND, handshakeFields({ coordinatorId: this.ctx.coordinatorId, siteId: a.siteId, nonce: a.nonce }), a.signature, fromB64(site.ed25519PublicKey))) {
        throw new WireError('TWF_E_HANDSHAKE', "signature does not verify with the site's enrolled key");
      }
      if (site.revokedAtMs !== null) throw new WireError('TWF_E_SITE_REVOKED', a.siteId);
      return a.siteId;
    } catch (e) {
      const we = toWireError(e);
      this.ctx.metrics.connectionsRefused.inc({ code: we.code });
      throw we;
    }
  }
}
