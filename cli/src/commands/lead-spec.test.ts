import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { leadStatusView, type StudyStatusWire } from './lead.js';
import { didYouMean, lineColumn, readJsonFile } from './spec.js';
import { printable } from './text.js';

const round = (over: Partial<StudyStatusWire['roundSummaries'][number]>): StudyStatusWire['roundSummaries'][number] => ({
  round: 1,
  state: 'closed',
  phase: 'closed',
  keySet: ['s1', 's2', 's3'],
  survivors: ['s1', 's2', 's3'],
  participants: ['s1', 's2', 's3', 's4'],
  declined: [],
  failReason: null,
  openedAt: '2025-01-01T00:00:00.000Z',
  closedAt: '2025-01-01T00:01:40.000Z',
  deadlineAt: '2025-01-01T00:05:00.000Z',
  ...over,
});
const site = (siteId: string, siteName: string, joined: boolean, connected: boolean) => ({ siteId, siteName, fingerprint: 'f', joined, connected, excluded: null, dpExhausted: false });

describe('lead status view', () => {
  it('names sites, places each in the open round, lists who has not approved, and projects an ETA from closed rounds', () => {
    const s: StudyStatusWire = {
      studyId: 'study-1',
      title: 't',
      state: 'running',
      stopReason: null,
      manifestHash: 'h',
      manifestVersion: 1,
      currentRound: 3,
      closedRounds: 2,
      rounds: 5,
      keyEpoch: 1,
      participants: [site('s1', 'Alpha', true, true), site('s2', 'Beta', true, true), site('s3', 'Gamma', true, false), site('s4', 'Delta', false, true), site('s5', 'Eps', false, false)],
      roundSummaries: [
        round({ round: 1 }),
        round({ round: 2, openedAt: '2025-01-01T00:02:00.000Z', closedAt: '2025-01-01T00:04:00.000Z', survivors: ['s1', 's2'] }),
        round({ round: 3, state: 'open', phase: 'upload', closedAt: null, openedAt: '2025-01-01T00:05:00.000Z', keySet: ['s1', 's2'], uploaded: ['s1'], uploading: [], maskKeysFrom: ['s1', 's2'] }),
      ],
    };
    const v = leadStatusView(s, Date.parse('2025-01-01T00:05:30.000Z'));
    assert.deepEqual(
      v.sites.map((x) => [x.siteName, x.round, x.approved]),
      [
        ['Alpha', 'uploaded', true],
        ['Beta', 'keyed', true],
        ['Gamma', 'dropped', true],
        ['Delta', 'dropped', false],
        ['Eps', 'not asked', null],
      ],
    );
    assert.deepEqual(
      v.notApproved.map((x) => [x.siteName, x.online]),
      [
        ['Delta', true],
        ['Eps', false],
      ],
    );
    // Closed rounds took 100 s and 120 s: 3 rounds left at 110 s, 30 s into the open one.
    assert.equal(v.meanRoundS, 110);
    assert.equal(v.etaS, 3 * 110 - 30);
    assert.deepEqual(v.history[1]!.dropped, ['Gamma']);
  });
});

describe('spec file helpers', () => {
  it('turns a character offset into line:column and suggests the nearest allowed key', () => {
    assert.deepEqual(lineColumn('ab\ncd\nef', 4), { line: 2, column: 2 });
    assert.equal(didYouMean('minSite', ['minSites', 'rounds']), 'minSites');
    assert.equal(didYouMean('ROUNDS', ['minSites', 'rounds']), 'rounds');
    assert.equal(didYouMean('colour', ['minSites', 'rounds']), null);
  });
  it('prints names and log text without terminal escape sequences', () => {
    assert.equal(printable('Hospital \u001b[2J\u009b31m A\nnext\tcol'), 'Hospital ?[2J?31m A\nnext\tcol');
  });
  it('names the file and line:column of a JSON syntax error, also at the end of the input', () => {
    const dir = mkdtempSync(join(tmpdir(), 'twf-spec-'));
    try {
      const f = join(dir, 's.json');
      writeFileSync(f, '{\n  "a": 1,\n  "b": [1, 2\n');
      assert.throws(
        () => readJsonFile(f),
        (e: Error) => e.message.startsWith(`TWF_E_SPEC: ${f}:4:1: JSON syntax error`),
      );
      writeFileSync(f, '{\n  "a": 1,\n  b: 2\n}');
      assert.throws(
        () => readJsonFile(f),
        (e: Error) => e.message.startsWith(`TWF_E_SPEC: ${f}:3:3: JSON syntax error`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
