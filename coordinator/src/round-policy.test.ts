import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decideRound, type RoundSnapshot } from './round-policy.js';

const P = ['a', 'b', 'c', 'd'];
const base: RoundSnapshot = {
  phase: 'setup', participants: P, setups: [], keySet: null, complete: [], survivors: null, signed: [], revealers: null, revealed: [],
  deadlineAtMs: 1000, phaseDeadlineAtMs: null, quorum: 3, threshold: 3, graceMs: 500,
};
const at = (over: Partial<RoundSnapshot>, now: number) => decideRound({ ...base, ...over }, now);

/** The round life cycle with a fake clock: no database, no sockets. */
describe('decideRound', () => {
  it('setup: waits for everyone until the deadline, then goes on with a quorum, in participant order', () => {
    assert.deepEqual(at({ setups: ['c', 'a'] }, 500), { kind: 'wait', untilMs: 1000 });
    assert.deepEqual(at({ setups: ['d', 'c', 'b', 'a'] }, 500), { kind: 'fix-key-set', keySet: ['a', 'b', 'c', 'd'] }, 'all in: no need to wait');
    assert.deepEqual(at({ setups: ['c', 'a', 'd'] }, 1000), { kind: 'fix-key-set', keySet: ['a', 'c', 'd'] });
  });

  it('setup short of quorum at the deadline: waits the grace, then fails naming the counts', () => {
    assert.deepEqual(at({ setups: ['a', 'b'] }, 1000), { kind: 'wait', untilMs: 1500 });
    const d = at({ setups: ['a', 'b'] }, 1500);
    assert.equal(d.kind, 'fail');
    assert.match((d as { reason: string }).reason, /mask keys: 2 of 4 answered .* 3 needed/);
  });

  it('ignores answers from sites outside the expected set', () => {
    assert.deepEqual(at({ setups: ['a', 'b', 'x', 'y'] }, 1000), { kind: 'wait', untilMs: 1500 });
  });

  it('upload: survivors are the complete uploads of the key set; quorum counts contributors', () => {
    const up = { phase: 'upload' as const, keySet: ['a', 'b', 'c', 'd'], phaseDeadlineAtMs: 2000 };
    assert.deepEqual(at({ ...up, complete: ['a', 'b', 'c'] }, 1500), { kind: 'wait', untilMs: 2000 });
    assert.deepEqual(at({ ...up, complete: ['a', 'b', 'c'] }, 2000), { kind: 'fix-survivors', survivors: ['a', 'b', 'c'] });
    assert.equal(at({ ...up, complete: ['a', 'b'] }, 2500).kind, 'fail');
  });

  it('a quorum above the threshold binds contributors; the threshold binds revealers', () => {
    const up = { phase: 'upload' as const, keySet: P, phaseDeadlineAtMs: 2000, quorum: 4, threshold: 3 };
    assert.deepEqual(at({ ...up, complete: ['a', 'b', 'c'] }, 2000), { kind: 'wait', untilMs: 2500 }, 'minSites 4: three contributors are not enough');
    const cons = { phase: 'consistency' as const, keySet: P, survivors: P, phaseDeadlineAtMs: 3000, quorum: 4, threshold: 3 };
    assert.deepEqual(at({ ...cons, signed: ['b', 'c', 'd'] }, 3000), { kind: 'fix-revealers', revealers: ['b', 'c', 'd'] });
  });

  it('unmask: closes when every revealer answered, or at the deadline with t of them; fails with fewer', () => {
    const un = { phase: 'unmask' as const, keySet: P, survivors: ['a', 'b', 'c'], revealers: ['a', 'b', 'c'], phaseDeadlineAtMs: 4000 };
    assert.deepEqual(at({ ...un, revealed: ['a', 'b', 'c'] }, 3500), { kind: 'close' });
    assert.deepEqual(at({ ...un, revealed: ['a', 'b'] }, 3500), { kind: 'wait', untilMs: 4000 });
    assert.equal(at({ ...un, revealed: ['a', 'b'] }, 4500).kind, 'fail');
  });

  it('fails at once when fewer sites are expected than needed (nothing can rescue the round)', () => {
    const d = at({ phase: 'consistency', keySet: P, survivors: ['a', 'b'], phaseDeadlineAtMs: 9000 }, 0);
    assert.equal(d.kind, 'fail');
    assert.match((d as { reason: string }).reason, /only 2 sites could answer, 3 needed/);
  });
});
