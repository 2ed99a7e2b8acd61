/**
 * `twinfed privacy epsilon|sigma`: the RDP accountant of shared/src/dp/accountant.ts from the
 * command line, so a lead or an officer can size a study's DP budget before writing the spec
 * (docs/privacy.md). `--rounds` counts compositions: DP-SGD steps for patient-level DP
 * (rounds × max(1, round(epochsPerRound / samplingRate))), rounds for site-level DP (q = 1).
 */
import { type Command, InvalidArgumentError } from 'commander';
import { epsilonFor, noiseMultiplierFor } from '@twinfed/shared/dp/accountant';

export interface EpsilonArgs {
  noiseMultiplier: number;
  rounds: number;
  samplingRate: number;
  delta: number;
}
export interface SigmaArgs {
  epsilon: number;
  rounds: number;
  samplingRate: number;
  delta: number;
}

export function privacyEpsilon(a: EpsilonArgs): { epsilon: number; order: number } {
  return epsilonFor({ samplingRate: a.samplingRate, noiseMultiplier: a.noiseMultiplier, steps: a.rounds, delta: a.delta });
}

export function privacySigma(a: SigmaArgs): { noiseMultiplier: number; epsilon: number; order: number } {
  const noiseMultiplier = noiseMultiplierFor({ samplingRate: a.samplingRate, steps: a.rounds, delta: a.delta, epsilon: a.epsilon });
  return { noiseMultiplier, ...epsilonFor({ samplingRate: a.samplingRate, noiseMultiplier, steps: a.rounds, delta: a.delta }) };
}

const num =
  (what: string, ok: (n: number) => boolean) =>
  (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || !ok(n)) throw new InvalidArgumentError(`expected ${what}`);
    return n;
  };
const positive = num('a positive number', (n) => n > 0);
const compositions = num('a positive integer', (n) => Number.isInteger(n) && n >= 1);
const rate = num('a number in (0, 1]', (n) => n > 0 && n <= 1);
const deltaArg = num('a number in (0, 1)', (n) => n > 0 && n < 1);
/** 1e-5 rather than 0.00001. */
const fmtDelta = (d: number) => (d < 1e-3 ? d.toExponential() : String(d));

/** Adds `privacy epsilon` and `privacy sigma` to the program. */
export function registerPrivacyCommands(program: Command): void {
  const privacy = program.command('privacy').description('Differential-privacy accounting (RDP of the subsampled Gaussian, Balle et al. 2020 conversion; docs/privacy.md)');
  const run = (fn: () => void) => {
    try {
      fn();
    } catch (e) {
      console.error((e as Error).message);
      process.exit(1);
    }
  };
  privacy
    .command('epsilon')
    .description('Epsilon spent by R compositions of the sampled Gaussian mechanism with noise multiplier S at sampling rate Q')
    .requiredOption('--noise-multiplier <sigma>', 'noise std / clip norm', positive)
    .requiredOption('--rounds <n>', 'compositions: DP-SGD steps (patient level) or rounds (site level, with --sampling-rate 1)', compositions)
    .option('--sampling-rate <q>', 'Poisson sampling probability per composition (1 = none)', rate, 1)
    .option('--delta <d>', 'delta of the (epsilon, delta) guarantee', deltaArg, 1e-5)
    .option('--json', 'print exactly one line {"epsilon":...,"order":...}')
    .action((o: EpsilonArgs & { json?: boolean }) =>
      run(() => {
        const r = privacyEpsilon(o);
        console.log(
          o.json
            ? JSON.stringify({ epsilon: r.epsilon, order: r.order })
            : `epsilon ${r.epsilon.toFixed(3)} at delta ${fmtDelta(o.delta)} (Renyi order ${r.order}): ${o.rounds} compositions, sampling rate ${o.samplingRate}, noise multiplier ${o.noiseMultiplier}`,
        );
      }),
    );
  privacy
    .command('sigma')
    .description('Smallest noise multiplier (3 significant digits, rounded up) that keeps R compositions at sampling rate Q within (E, delta)')
    .requiredOption('--epsilon <e>', 'budget', positive)
    .requiredOption('--rounds <n>', 'compositions: DP-SGD steps (patient level) or rounds (site level, with --sampling-rate 1)', compositions)
    .option('--sampling-rate <q>', 'Poisson sampling probability per composition (1 = none)', rate, 1)
    .option('--delta <d>', 'delta of the (epsilon, delta) guarantee', deltaArg, 1e-5)
    .option('--json', 'print exactly one line {"noiseMultiplier":...,"epsilon":...,"order":...}')
    .action((o: SigmaArgs & { json?: boolean }) =>
      run(() => {
        const r = privacySigma(o);
        console.log(
          o.json
            ? JSON.stringify(r)
            : `noise multiplier ${r.noiseMultiplier}: epsilon ${r.epsilon.toFixed(3)} <= ${o.epsilon} at delta ${fmtDelta(o.delta)} (Renyi order ${r.order}) over ${o.rounds} compositions at sampling rate ${o.samplingRate}`,
        );
      }),
    );
}
