import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateIdentity } from '../crypto/identity.js';
import { initSodium } from '../crypto/sodium.js';
import { signStatement, verifyStatement } from '../crypto/statement.js';
import { CHECKPOINT_KIND, RECEIPT_KIND, checkpointFields, receiptFields, type Checkpoint, type Receipt } from './receipts.js';

describe('receipt and checkpoint statements', () => {
  before(() => initSodium());

  it('sign every field but the signature, and nothing else', () => {
    const r: Receipt = { coordinatorId: 'c', siteId: 's', seq: 7, msgType: 'update.chunk', studyId: null, round: 2, digest: 'd', entryId: 41, entryHash: 'h', signature: 'x' };
    const withExtra = { ...r, note: 'not signed' } as Receipt;
    assert.deepEqual(
      Object.keys(receiptFields(withExtra)).sort(),
      Object.keys(r)
        .filter((k) => k !== 'signature')
        .sort(),
    );
    const c: Checkpoint = { coordinatorId: 'c', entryId: 41, entryHash: 'h', tsMs: 5, signature: 'x' };
    assert.deepEqual(Object.keys(checkpointFields(c)).sort(), ['coordinatorId', 'entryHash', 'entryId', 'tsMs']);
  });

  it('a signature is bound to every field and to the kind', () => {
    const id = generateIdentity();
    const r = { coordinatorId: 'c', siteId: 's', seq: 7, msgType: 'update.chunk', studyId: 'st', round: 2, digest: 'd', entryId: 41, entryHash: 'h' };
    const sig = signStatement(RECEIPT_KIND, receiptFields(r), id.ed25519SecretKey);
    assert.equal(verifyStatement(RECEIPT_KIND, receiptFields(r), sig, id.ed25519PublicKey), true);
    for (const k of Object.keys(r) as (keyof typeof r)[]) {
      const changed = { ...r, [k]: typeof r[k] === 'number' ? (r[k] as number) + 1 : `${r[k]}!` };
      assert.equal(verifyStatement(RECEIPT_KIND, receiptFields(changed), sig, id.ed25519PublicKey), false, k);
    }
    assert.equal(verifyStatement(CHECKPOINT_KIND, receiptFields(r), sig, id.ed25519PublicKey), false, 'not valid as another kind');
  });
});
