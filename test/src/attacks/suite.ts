import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Attack, AttackOutcome } from './types.js';
import { STUDY_SETUP_ATTACKS } from './study-setup.js';
import { NETWORK_ATTACKS } from './network.js';
import { OPERATIONS_ATTACKS } from './operations.js';
import { PROTOCOL_ATTACKS } from './protocol.js';
import { SECAGG_ATTACKS } from './secagg.js';
import { STRATEGY_DP_ATTACKS } from './strategy-dp.js';
import { CONSOLE_ATTACKS } from './consoles.js';
import { SCALE_ATTACKS } from './scale.js';
import { TWIN_PRIOR_ATTACKS } from './twin-prior.js';

/** Every attack of the suite, in the order the table lists them. */
export const ATTACKS: Attack[] = [
  ...STUDY_SETUP_ATTACKS,
  ...PROTOCOL_ATTACKS,
  ...SECAGG_ATTACKS,
  ...OPERATIONS_ATTACKS,
  ...NETWORK_ATTACKS,
  ...STRATEGY_DP_ATTACKS,
  ...CONSOLE_ATTACKS,
  ...SCALE_ATTACKS,
  ...TWIN_PRIOR_ATTACKS,
];

export interface AttackResult extends AttackOutcome {
  name: string;
  finding: number | null;
  expected: string;
  seconds: number;
}

/** Runs one attack in its own folder; an exception is reported as FAILED (the suite never hides a crash). */
export async function runAttack(a: Attack, log: (msg: string) => void = () => undefined): Promise<AttackResult> {
  const dir = mkdtempSync(join(tmpdir(), `twinfed-attack-${a.name}-`));
  const t0 = performance.now();
  let o: AttackOutcome;
  try {
    o = await a.run({ dir, log: (m) => log(`${a.name}: ${m}`) });
  } catch (e) {
    o = { observed: `the attack crashed the harness: ${(e as Error).message.split('\n')[0].slice(0, 300)}`, code: null, outcome: 'FAILED' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { name: a.name, finding: a.finding, expected: a.expected, ...o, seconds: (performance.now() - t0) / 1000 };
}
