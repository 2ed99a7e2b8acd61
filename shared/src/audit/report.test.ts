import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateIdentity, type Identity } from '../crypto/identity.js';
import { initSodium } from '../crypto/sodium.js';
import { GENESIS_HASH, signEntry, verifyAuditChain, type AuditEntry, type AuditFields } from './chain.js';
import { buildAuditReport, extractSignedReport, renderAuditReportHtml, signAuditReport, verifyAuditReport, verifyAuditReportHtml, type SignedAuditReport } from './report.js';

const DAY_MS = 86_400_000;
const D1 = Date.UTC(2025, 2, 1); // 2025-03-01 00:00 UTC

function chain(id: Identity, fields: Omit<AuditFields, 'id'>[]): AuditEntry[] {
  const out: AuditEntry[] = [];
  fields.forEach((f, i) => out.push(signEntry({ ...f, id: i + 1 }, out[i - 1]?.hash ?? GENESIS_HASH, id.ed25519SecretKey)));
  return out;
}

const base = { actor: 'site-a', action: 'msg.sent', peer: 'coordinator-1', msgType: 'update.chunk', seq: null, studyId: 'study-1', round: 1, digest: 'ab'.repeat(32), sizeBytes: 10, detail: null };
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('signed audit report', () => {
  let owner: Identity;
  let other: Identity;
  let entries: AuditEntry[];
  let signed: SignedAuditReport;

  before(async () => {
    await initSodium();
    owner = generateIdentity();
    other = generateIdentity();
    entries = chain(owner, [
      { ...base, tsMs: D1 - 1, action: 'study.approved', msgType: null, detail: 'before the range' },
      { ...base, tsMs: D1, seq: 1 },
      { ...base, tsMs: D1 + 3_600_000, seq: 2, msgType: 'metrics.report', studyId: 'study-2' },
      { ...base, tsMs: D1 + DAY_MS + 5, seq: 3, action: 'msg.received', msgType: 'round.start' },
      { ...base, tsMs: D1 + 2 * DAY_MS - 1, action: 'msg.rejected', msgType: null, studyId: null, detail: '<script>alert(1)</script><img src=x onerror=alert(2)>' },
      { ...base, tsMs: D1 + 2 * DAY_MS, seq: 4, detail: 'the day after the range' },
    ]);
    const report = buildAuditReport({
      entries,
      owner: { ownerId: 'site-a', ed25519PublicKey: owner.ed25519PublicKey },
      fromMs: D1,
      toMs: D1 + 2 * DAY_MS,
      verdict: verifyAuditChain(entries, owner.ed25519PublicKey),
      generatedAtMs: D1 + 3 * DAY_MS,
    });
    signed = signAuditReport(report, owner.ed25519SecretKey);
  });

  it('keeps the entries of the range (from included, to excluded) with counts and the first and last hash, and the whole chain verdict', () => {
    const r = signed.report;
    assert.deepEqual(
      r.entries.map((e) => e.id),
      [2, 3, 4, 5],
    );
    assert.deepEqual(r.counts, {
      entries: 4,
      byMessageType: { 'update.chunk': 1, 'metrics.report': 1, 'round.start': 1 },
      byStudy: { 'study-1': 2, 'study-2': 1 },
      byAction: { 'msg.sent': 2, 'msg.received': 1, 'msg.rejected': 1 },
    });
    assert.deepEqual(r.first, { id: 2, hash: entries[1].hash });
    assert.deepEqual(r.last, { id: 5, hash: entries[4].hash });
    assert.deepEqual(r.chain, { ok: true, totalEntries: 6, checked: 6, firstBroken: null, lastHash: entries[5].hash });
    const empty = buildAuditReport({
      entries,
      owner: { ownerId: 'site-a', ed25519PublicKey: owner.ed25519PublicKey },
      fromMs: D1 + 10 * DAY_MS,
      toMs: D1 + 11 * DAY_MS,
      verdict: verifyAuditChain(entries, owner.ed25519PublicKey),
    });
    assert.equal(empty.counts.entries, 0);
    assert.equal(empty.first, null);
    assert.throws(
      () => buildAuditReport({ entries, owner: { ownerId: 'x', ed25519PublicKey: owner.ed25519PublicKey }, fromMs: D1, toMs: D1, verdict: verifyAuditChain(entries, owner.ed25519PublicKey) }),
      RangeError,
    );
  });

  it('verifies under the pinned owner key, and (saying so) under the key it names', () => {
    const pinned = verifyAuditReport(clone(signed), owner.ed25519PublicKey);
    assert.equal(pinned.verdict, 'ok', pinned.message);
    assert.equal(pinned.keySource, 'argument');
    const self = verifyAuditReport(clone(signed));
    assert.equal(self.verdict, 'ok');
    assert.match(self.message, /No key was pinned/);
  });

  it('detects one changed entry, a dropped entry, a changed count, and a re-signed copy under another key', () => {
    const edited = clone(signed);
    edited.report.entries[1].detail = 'nothing happened';
    assert.equal(verifyAuditReport(edited, owner.ed25519PublicKey).verdict, 'tampered');
    assert.equal(verifyAuditReport(edited).verdict, 'tampered');

    const dropped = clone(signed);
    dropped.report.entries.splice(3, 1);
    assert.equal(verifyAuditReport(dropped, owner.ed25519PublicKey).verdict, 'tampered');

    const recounted = clone(signed);
    recounted.report.counts.byAction['msg.rejected'] = 0;
    assert.equal(verifyAuditReport(recounted, owner.ed25519PublicKey).verdict, 'tampered');

    // Edited, hash recomputed, signed again with the forger's key but still naming the owner's key.
    const forged = clone(signed);
    forged.report.entries[1].detail = 'nothing happened';
    const reSigned = signAuditReport({ ...forged.report, owner: { ...forged.report.owner } }, owner.ed25519SecretKey);
    reSigned.signature.value = signAuditReport(
      { ...reSigned.report, owner: { ...reSigned.report.owner, ed25519PublicKey: Buffer.from(other.ed25519PublicKey).toString('base64') } },
      other.ed25519SecretKey,
    ).signature.value;
    assert.equal(verifyAuditReport(reSigned, owner.ed25519PublicKey).verdict, 'tampered');

    // An edited entry in a report the forger re-signs as its own: the report is "intact" under the forger's key,
    // the pinned key tells it apart, and the edited entry no longer matches its chain signature anyway.
    const own = buildAuditReport({
      entries: [...entries.slice(0, 2), { ...entries[2], detail: 'rewritten' }, ...entries.slice(3)],
      owner: { ownerId: 'site-a', ed25519PublicKey: other.ed25519PublicKey },
      fromMs: D1,
      toMs: D1 + 2 * DAY_MS,
      verdict: verifyAuditChain(entries, owner.ed25519PublicKey),
    });
    const ownSigned = signAuditReport(own, other.ed25519SecretKey);
    assert.equal(verifyAuditReport(ownSigned, owner.ed25519PublicKey).verdict, 'key-mismatch');
    assert.equal(verifyAuditReport(ownSigned).verdict, 'tampered', 'the entries carry the chain signatures of the real owner');
  });

  it('reports a wrong pinned key as a key mismatch, not as tampering', () => {
    const v = verifyAuditReport(clone(signed), other.ed25519PublicKey);
    assert.equal(v.verdict, 'key-mismatch');
    assert.equal(v.ok, false);
    assert.match(v.message, /intact and signed/);
  });

  it('refuses what is not a report, and signing with a key that is not the owner', () => {
    assert.equal(verifyAuditReport({ report: {}, signature: {} }).verdict, 'malformed');
    assert.equal(verifyAuditReport('hello').verdict, 'malformed');
    assert.throws(() => signAuditReport(signed.report, other.ed25519SecretKey), /another public key/);
  });

  it('records a broken chain in the report', () => {
    const broken = clone(entries);
    broken[3].detail = 'edited in the database';
    const r = buildAuditReport({
      entries: broken,
      owner: { ownerId: 'site-a', ed25519PublicKey: owner.ed25519PublicKey },
      fromMs: 0,
      toMs: D1,
      verdict: verifyAuditChain(broken, owner.ed25519PublicKey),
    });
    assert.equal(r.chain.ok, false);
    assert.equal(r.chain.firstBroken?.id, 4);
    const html = renderAuditReportHtml(signAuditReport(r, owner.ed25519SecretKey));
    assert.match(html, /Chain BROKEN at entry 4/);
  });

  it('renders a printable HTML document that escapes a hostile detail, runs no script, and embeds the signed report for verification', () => {
    const doc = renderAuditReportHtml(signed);
    assert.match(doc, /^<!doctype html>/);
    assert.ok(doc.includes('&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;'), 'the detail is shown escaped');
    assert.ok(!doc.includes('<img'), 'no element from the data');
    // The only <script> element is the JSON block; it cannot be closed early by the data.
    assert.deepEqual(doc.match(/<script[^>]*>/g), ['<script type="application/json" id="twinfed-report">']);
    assert.equal(doc.match(/<\/script>/g)?.length, 1);
    assert.match(doc, /Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"/);
    assert.ok(doc.includes(signed.signature.value) && doc.includes(signed.report.owner.fingerprint), 'signature and key fingerprint are printed');
    assert.match(doc, /twinfed audit verify-report/);
    const embedded = extractSignedReport(doc);
    assert.deepEqual(embedded, signed);
    assert.equal(verifyAuditReport(embedded, owner.ed25519PublicKey).verdict, 'ok');
    // Editing the visible table is caught too: the verifier re-renders the signed data and compares.
    assert.equal(verifyAuditReportHtml(doc, owner.ed25519PublicKey).verdict, 'ok');
    const visible = doc.replace('<td>study-2 r1</td>', '<td>study-9 r1</td>');
    assert.notEqual(visible, doc);
    const v = verifyAuditReportHtml(visible, owner.ed25519PublicKey);
    assert.equal(v.verdict, 'tampered');
    assert.match(v.message, /visible/);
    const editedData = doc.replace('\\u003cscript\\u003ealert(1)', 'harmless');
    assert.notEqual(editedData, doc);
    assert.equal(verifyAuditReportHtml(editedData, owner.ed25519PublicKey).verdict, 'tampered');
    assert.equal(verifyAuditReportHtml('<html>no report</html>').verdict, 'malformed');
  });
});
