/**
 * npm run audit:attacks — the red-team suite a privacy officer runs before joining a consortium.
 * Each attack starts real parts (a coordinator on loopback, site nodes or hand-driven sites with
 * real keys, real SQLite files, real SEAL) and plays one attack; the table says what was expected
 * and what happened. The last line is one JSON object (with --json, the only output on stdout):
 *   {"attacks":[{"name","finding","expected","observed","code","outcome"}],"failed":N}
 * Exit status 1 when any attack succeeded (outcome FAILED). `--only NAME[,NAME]` runs a subset.
 */
import { ATTACKS, runAttack, type AttackResult } from './suite.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1]?.split(',') : null;
const verbose = args.includes('--verbose');
const selected = only ? ATTACKS.filter((a) => only.includes(a.name)) : ATTACKS;
if (only && selected.length !== only.length) {
  console.error(`unknown attack(s): ${only.filter((n) => !ATTACKS.some((a) => a.name === n)).join(', ')}; known: ${ATTACKS.map((a) => a.name).join(', ')}`);
  process.exit(2);
}

const results: AttackResult[] = [];
const t0 = performance.now();
for (const a of selected) {
  process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${a.name} ...\n`);
  const r = await runAttack(a, verbose ? (m) => process.stderr.write(`    ${m}\n`) : undefined);
  results.push(r);
  process.stderr.write(`         ${r.outcome}${r.code ? ` (${r.code})` : ''}: ${r.observed}\n`);
}
const failedN = results.filter((r) => r.outcome === 'FAILED').length;

if (!json) {
  const w = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n));
  console.log(`\nTwinfed red-team suite: ${results.length} attacks against a real coordinator and real sites on loopback (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
  console.log(`${w('finding', 7)}  ${w('attack', 34)}  ${w('expected', 60)}  ${w('outcome', 9)}  ${w('code', 28)}  observed`);
  for (const r of results) {
    console.log(`${w(r.finding === null ? '+' : String(r.finding), 7)}  ${w(r.name, 34)}  ${w(r.expected, 60)}  ${w(r.outcome, 9)}  ${w(r.code ?? '-', 28)}  ${r.observed}`);
  }
  console.log(`\n${results.filter((r) => r.outcome === 'refused').length} refused, ${results.filter((r) => r.outcome === 'contained').length} contained, ${failedN} FAILED\n`);
}
console.log(JSON.stringify({ attacks: results.map(({ name, finding, expected, observed, code, outcome }) => ({ name, finding, expected, observed, code, outcome })), failed: failedN }));
process.exit(failedN > 0 ? 1 : 0);
