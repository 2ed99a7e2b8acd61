import { TLS_ROLLOVER_KIND, WireError, tlsRolloverFields, type BodyOf } from '@twinfed/protocols';
import type { AuditLog } from '@twinfed/shared/audit/index';
import { verifyStatement } from '@twinfed/shared/crypto/index';
import { loadSiteConfig, saveSiteConfig, type SiteConfig } from './config.js';
import { CoordinatorLink, type TlsRefusal } from './net.js';

/** The most pins site.json holds (its schema refuses more). */
const MAX_PINS = 32;

export interface SiteTlsContext {
  dataDir: string;
  config: SiteConfig;
  audit: AuditLog;
  /** The coordinator's Ed25519 key pinned at enrolment: a rollover must be signed with it. */
  coordinatorKey: Uint8Array;
  log(level: 'info' | 'warn' | 'error', msg: string): void;
  /** True once the node is closed (its database too): late TLS events are then dropped. */
  closed(): boolean;
}

/**
 * A running site's TLS trust: the link every connection goes through, with the pins of
 * site.json; adds the next pin from the coordinator's signed rollover (persisted, audited
 * `tls.pin_added`); audits a refused key (`tls.refused`, once per key presented; the node logs
 * and reports each refused connection).
 */
export class SiteTls {
  readonly link: CoordinatorLink;
  private readonly refusedKeys = new Set<string>();

  constructor(private readonly ctx: SiteTlsContext) {
    this.link = new CoordinatorLink({ coordinatorUrl: ctx.config.coordinatorUrl, tlsPins: ctx.config.tlsPins, onTlsRefused: (r) => this.onRefused(r) });
  }

  /** tls.rollover: verify against the pinned coordinator key, then pin the next key. True when a pin was added. */
  onRollover(b: BodyOf['tls.rollover']): boolean {
    const { config, audit } = this.ctx;
    const f = tlsRolloverFields({ coordinatorId: config.coordinatorId, currentPin: b.currentPin, nextPin: b.nextPin, issuedAtMs: b.issuedAtMs });
    if (!verifyStatement(TLS_ROLLOVER_KIND, f, b.signature, this.ctx.coordinatorKey)) throw new WireError('TWF_E_BAD_SIGNATURE', 'TLS rollover not signed with the pinned coordinator key');
    if (this.link.trust !== 'pins') {
      // Pinning one key would lock out a site that trusts certificate authorities (or plain http).
      this.ctx.log('info', `the coordinator announces its next TLS key ${b.nextPin}; this site does not pin TLS keys (${this.link.trust}), nothing to do`);
      return false;
    }
    const pins = this.link.pinned;
    if (pins.includes(b.nextPin)) return false;
    if (!pins.includes(b.currentPin) || pins.length >= MAX_PINS) {
      const why = pins.length >= MAX_PINS ? `site.json already holds ${MAX_PINS} pins; remove retired ones` : `it says the coordinator serves ${b.currentPin}, which this site does not pin`;
      audit.append({ actor: config.coordinatorId, action: 'tls.rollover_ignored', peer: config.siteId, detail: JSON.stringify({ nextPin: b.nextPin, why }) });
      this.ctx.log('warn', `TLS rollover to ${b.nextPin} not applied: ${why}`);
      return false;
    }
    // site.json first: a pin the running link accepts is a pin the next start accepts too.
    const onDisk = loadSiteConfig(this.ctx.dataDir);
    saveSiteConfig(this.ctx.dataDir, { ...onDisk, tlsPins: [...new Set([...onDisk.tlsPins, b.nextPin])] });
    config.tlsPins = [...pins, b.nextPin];
    this.link.addPin(b.nextPin);
    audit.append({
      actor: config.coordinatorId,
      action: 'tls.pin_added',
      peer: config.siteId,
      detail: JSON.stringify({ pin: b.nextPin, source: 'rollover', currentPin: b.currentPin, issuedAtMs: b.issuedAtMs, signature: b.signature }),
    });
    this.ctx.log('info', `pinned the coordinator's next TLS key ${b.nextPin} (signed rollover); it is accepted when the coordinator restarts on it`);
    return true;
  }

  private onRefused(r: TlsRefusal): void {
    if (this.ctx.closed() || this.refusedKeys.has(r.presented)) return; // retried with backoff: audited once per key
    this.refusedKeys.add(r.presented);
    const { config, audit } = this.ctx;
    audit.append({
      actor: config.siteId,
      action: 'tls.refused',
      peer: config.coordinatorId,
      detail: JSON.stringify({ presented: r.presented, subject: r.subject, issuer: r.issuer, pinned: this.link.pinned, via: this.link.proxy ? this.link.via.trim() : null }),
    });
  }
}
