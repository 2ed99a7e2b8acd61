import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WireError, canonicalJson, utf8 } from '@twinfed/protocols';
import { decodeBody, decodeMeta, parseEnvelope, sealEnvelope, verifyEnvelope } from './envelope.js';
import { generateIdentity, openSealed, sealTo, sign, verify, type Identity } from './identity.js';
import { initSodium, sodium } from './sodium.js';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as WireError).code;
  }
  return 'no error';
};

describe('signed envelopes', () => {
  let id: Identity;
  let other: Identity;
  let seq = 0;
  const signer = () => ({ id: 'site-x', ed25519SecretKey: id.ed25519SecretKey, nextSeq: () => ++seq });
  before(async () => {
    await initSodium();
    id = generateIdentity();
    other = generateIdentity();
  });

  it('verifies an untouched envelope and decodes its body', () => {
    const env = sealEnvelope(signer(), { to: 'coordinator-x', type: 'aggregate.request', studyId: 's', round: null, body: { fromRound: 2 } });
    verifyEnvelope(parseEnvelope(env), id.ed25519PublicKey);
    assert.deepEqual(decodeBody(env, 'aggregate.request'), { fromRound: 2 });
    assert.equal(env.header.sizeBytes, utf8(canonicalJson({ fromRound: 2 })).length);
  });

  it('detects a changed header field, a changed body, and the wrong key', () => {
    const env = sealEnvelope(signer(), { to: 'coordinator-x', type: 'aggregate.request', studyId: 's', round: null, body: { fromRound: 2 } });
    assert.equal(
      code(() => verifyEnvelope({ ...env, header: { ...env.header, round: 3 } }, id.ed25519PublicKey)),
      'TWF_E_BAD_SIGNATURE',
    );
    assert.equal(
      code(() => verifyEnvelope({ ...env, body: utf8('{"fromRound":1}') }, id.ed25519PublicKey)),
      'TWF_E_DIGEST_MISMATCH',
    );
    assert.equal(
      code(() => verifyEnvelope(env, other.ed25519PublicKey)),
      'TWF_E_BAD_SIGNATURE',
    );
  });

  it('refuses malformed envelopes, bodies and chunk metadata', () => {
    assert.equal(
      code(() => parseEnvelope({ header: {}, signature: 'x', body: new Uint8Array() })),
      'TWF_E_MALFORMED',
    );
    const env = sealEnvelope(signer(), { to: 'coordinator-x', type: 'aggregate.request', studyId: 's', round: null, body: { fromRound: -1 } });
    assert.equal(
      code(() => decodeBody(env, 'aggregate.request')),
      'TWF_E_MALFORMED',
    );
    const chunk = sealEnvelope(signer(), { to: 'coordinator-x', type: 'update.chunk', studyId: 's', round: 1, body: new Uint8Array([1, 2]), meta: { index: 0 } });
    assert.equal(
      code(() => decodeMeta(chunk)),
      'TWF_E_MALFORMED',
    );
  });

  it("sealed boxes open only with the recipient's X25519 key", () => {
    const box = sealTo(id.x25519PublicKey, new Uint8Array([9, 8, 7]));
    assert.deepEqual(Array.from(openSealed(box, id)), [9, 8, 7]);
    assert.throws(() => openSealed(box, other));
  });
});

describe('signed statements', () => {
  it("verify only for the same kind, the same fields and the signer's key", async () => {
    await initSodium();
    const { signStatement, verifyStatement } = await import('./statement.js');
    const a = generateIdentity();
    const b = generateIdentity();
    const fields = { studyId: 's1', round: 2, ids: ['x', 'y'] };
    const sig = signStatement('twinfed.test.v1', fields, a.ed25519SecretKey);
    assert.equal(verifyStatement('twinfed.test.v1', { round: 2, ids: ['x', 'y'], studyId: 's1' }, sig, a.ed25519PublicKey), true, 'key order does not matter');
    assert.equal(verifyStatement('twinfed.other.v1', fields, sig, a.ed25519PublicKey), false, 'another kind');
    assert.equal(verifyStatement('twinfed.test.v1', { ...fields, round: 3 }, sig, a.ed25519PublicKey), false, 'another field value');
    assert.equal(verifyStatement('twinfed.test.v1', fields, sig, b.ed25519PublicKey), false, 'another key');
    assert.equal(verifyStatement('twinfed.test.v1', fields, 'not base64!', a.ed25519PublicKey), false);
  });
});

describe('Ed25519 signing through node:crypto', () => {
  it("gives libsodium's signature byte for byte (deterministic RFC 8032), and libsodium verifies it", async () => {
    await initSodium();
    for (let i = 0; i < 20; i++) {
      const id = generateIdentity();
      const msg = new Uint8Array(Buffer.from(`message ${i} ${'x'.repeat(i * 37)}`));
      const ours = sign(msg, id.ed25519SecretKey);
      assert.deepEqual(Buffer.from(ours), Buffer.from(sodium().crypto_sign_detached(msg, id.ed25519SecretKey)));
      assert.equal(verify(ours, msg, id.ed25519PublicKey), true);
    }
  });
});
