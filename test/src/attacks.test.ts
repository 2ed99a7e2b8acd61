import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ATTACKS, runAttack } from './attacks/suite.js';

/**
 * The red-team suite (npm run audit:attacks) as tests: every attack is refused or contained.
 * Each attack is one test, so a failure names the attack and what was observed.
 */
describe('red-team suite: every attack is refused or contained', () => {
  for (const a of ATTACKS) {
    it(`${a.finding === null ? '+' : `finding ${a.finding}`}: ${a.name} — ${a.expected}`, async () => {
      const r = await runAttack(a);
      assert.notEqual(r.outcome, 'FAILED', `${a.name}: ${r.observed}`);
    });
  }
});
