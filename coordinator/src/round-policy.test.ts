import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decideRound, type RoundSnapshot } from './round-policy.js';

const P = ['a', 'b', 'c', 'd'];
const base: RoundSnapshot = {
  phase: 'setup',
  participants: P,
  setups: [],
  keySet: null,
  complete: [],
  survivors: null,
  signed: [],
  revealers: null,
  revealed: [],
  deadlineAtMs: 1000,
  phaseDeadlineAtMs: null,
  quorum: 3,
  threshold: 3,
  graceMs: 500,
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

import { nextAction, type StudySnapshot } from './round-policy.js';

const study: StudySnapshot = {
  state: 'running',
  roundsPlanned: 2,
  closedRounds: 0,
  openRound: null,
  quorum: 3,
  budgetLeft: ['a', 'b', 'c', 'd'],
  exhausted: [],
  key: { state: 'current', delivered: ['a', 'b', 'c', 'd'] },
  nextDealer: 'a',
  dealerTimeoutMs: 100,
  candidates: ['a', 'b', 'c'],
  lastJoinAtMs: 0,
  lastFailedAtMs: null,
  joinSettleMs: 50,
};
const next = (over: Partial<StudySnapshot>, now = 1000) => nextAction({ ...study, ...over }, now);

/** The study life cycle, every branch of nextAction. */
describe('nextAction', () => {
  it('waits while the study is not running', () => {
    for (const state of ['draft', 'stopped', 'completed'] as const) assert.deepEqual(next({ state }), { kind: 'wait', untilMs: null });
  });
  it('requests a key epoch when none fits and a dealer is online; waits without a dealer', () => {
    assert.deepEqual(next({ key: { state: 'new' } }), { kind: 'request-keys', dealer: 'a' });
    assert.deepEqual(next({ key: { state: 'new' }, nextDealer: null }), { kind: 'wait', untilMs: null });
  });
  it('replaces a dealer that went offline or is too slow; waits for one in time', () => {
    assert.deepEqual(next({ key: { state: 'pending', dealerOnline: false, requestedAtMs: 990 }, nextDealer: 'b' }), { kind: 'replace-dealer', dealer: 'b' });
    assert.deepEqual(next({ key: { state: 'pending', dealerOnline: true, requestedAtMs: 800 }, nextDealer: 'b' }), { kind: 'replace-dealer', dealer: 'b' });
    assert.deepEqual(next({ key: { state: 'pending', dealerOnline: true, requestedAtMs: 950 }, nextDealer: 'b' }), { kind: 'wait', untilMs: 1051 });
    assert.deepEqual(next({ key: { state: 'pending', dealerOnline: false, requestedAtMs: 950 }, nextDealer: null }), { kind: 'wait', untilMs: null });
  });
  it('steps the open round, or waits for its earliest deadline', () => {
    assert.deepEqual(next({ openRound: { ...base, setups: P } }), { kind: 'round', decision: { kind: 'fix-key-set', keySet: P } });
    assert.deepEqual(next({ openRound: { ...base, deadlineAtMs: 5000 } }), { kind: 'wait', untilMs: 5000 });
    assert.deepEqual(next({ openRound: { ...base, deadlineAtMs: 5000 }, key: { state: 'pending', dealerOnline: true, requestedAtMs: 950 } }), { kind: 'wait', untilMs: 1051 });
  });
  it('completes when every planned round closed', () => {
    assert.deepEqual(next({ closedRounds: 2 }), { kind: 'complete' });
  });
  it('stops, naming the exhausted sites, when fewer than the quorum have privacy budget left', () => {
    const a = next({ budgetLeft: ['a', 'b'], exhausted: ['c', 'd'] });
    assert.equal(a.kind, 'stop');
    assert.match((a as { reason: string }).reason, /only 2 .* 3 needed; exhausted \(TWF_E_DP_BUDGET\): c,d/);
    assert.match((next({ budgetLeft: [] }) as { reason: string }).reason, /exhausted .*: none/);
  });
  it('pauses after a failed round', () => {
    assert.deepEqual(next({ lastFailedAtMs: 980 }), { kind: 'wait', untilMs: 1030 });
    assert.deepEqual(next({ lastFailedAtMs: 900 }), { kind: 'open', participants: ['a', 'b', 'c'] });
  });
  it('waits without a dealt key, or until it reached every candidate and they are a quorum', () => {
    assert.deepEqual(next({ key: { state: 'pending', dealerOnline: true, requestedAtMs: 990 }, nextDealer: null }), { kind: 'wait', untilMs: 1091 });
    assert.deepEqual(next({ key: { state: 'current', delivered: ['a', 'b'] } }), { kind: 'wait', untilMs: null });
    assert.deepEqual(next({ candidates: ['a', 'b'] }), { kind: 'wait', untilMs: null });
  });
  it('waits for joins to settle, then opens with the keyed candidates in order', () => {
    assert.deepEqual(next({ lastJoinAtMs: 990 }), { kind: 'wait', untilMs: 1040 });
    assert.deepEqual(next({}), { kind: 'open', participants: ['a', 'b', 'c'] });
  });
  it('decideRound: a site that declined in the upload phase is not waited for', () => {
    const up = { phase: 'upload' as const, keySet: P, declined: ['d'], phaseDeadlineAtMs: 2000 };
    assert.deepEqual(at({ ...up, complete: ['a', 'b', 'c'] }, 1500), { kind: 'fix-survivors', survivors: ['a', 'b', 'c'] });
  });
});
