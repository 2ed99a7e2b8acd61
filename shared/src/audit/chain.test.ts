import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateIdentity, type Identity } from '../crypto/identity.js';
import { initSodium } from '../crypto/sodium.js';
import { GENESIS_HASH, entryHash, signEntry, verifyAuditChain, type AuditEntry, type AuditFields } from './chain.js';

function chain(id: Identity, fields: Omit<AuditFields, 'id'>[]): AuditEntry[] {
  const out: AuditEntry[] = [];
  fields.forEach((f, i) => out.push(signEntry({ ...f, id: i + 1 }, out[i - 1]?.hash ?? GENESIS_HASH, id.ed25519SecretKey)));
  return out;
}

const base = { tsMs: 1, actor: 'site-a', action: 'msg.sent', peer: 'coord', msgType: 'update.chunk', studyId: 's', round: 1, sizeBytes: 10, detail: null };

describe('hash-chained audit log', () => {
  let id: Identity;
  let entries: AuditEntry[];
  before(async () => {
    await initSodium();
    id = generateIdentity();
    entries = chain(
      id,
      [1, 2, 3, 4].map((seq) => ({ ...base, seq, digest: `d${seq}` })),
    );
  });

  it('verifies an intact chain', () => {
    assert.deepEqual(verifyAuditChain(entries, id.ed25519PublicKey), { ok: true, checked: 4, firstBroken: null, lastHash: entries[3].hash });
  });
  it('names the first edited entry', () => {
    const edited = entries.map((e) => (e.id === 3 ? { ...e, detail: 'changed' } : e));
    const v = verifyAuditChain(edited, id.ed25519PublicKey);
    assert.equal(v.firstBroken?.id, 3);
    assert.match(v.firstBroken!.reason, /edited/);
    assert.equal(v.checked, 2);
  });
  it('detects a deleted entry, a rehashed edit without the key, and the wrong key', () => {
    assert.match(verifyAuditChain([entries[0], entries[2], entries[3]], id.ed25519PublicKey).firstBroken!.reason, /deleted or inserted/);
    const e2 = { ...entries[1], detail: 'x' };
    const rehashed = { ...e2, hash: entryHash(e2, e2.prevHash) };
    assert.match(verifyAuditChain([entries[0], rehashed], id.ed25519PublicKey).firstBroken!.reason, /signature/);
    assert.equal(verifyAuditChain(entries, generateIdentity().ed25519PublicKey).firstBroken!.id, 1);
  });
});
