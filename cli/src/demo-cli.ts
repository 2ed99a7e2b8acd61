import { type Command, InvalidArgumentError, Option } from 'commander';
import type { DemoStrategyName } from './demo-kit.js';

/**
 * The options both demo commands share (`demo`, `demo-response`): strategy, differential privacy,
 * and --serve. Light on purpose (commander only): bin.ts loads it to declare the commands, the demo
 * itself is imported when the command runs.
 */
export interface DemoCommonFlags {
  strategy?: DemoStrategyName;
  epsilon?: number;
  dpLevel?: 'patient' | 'site';
  serve?: boolean;
}

const STRATEGIES = ['fedavg', 'fedprox', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'] satisfies DemoStrategyName[];

const epsilonArg = (v: string): number => {
  const n = Number(v);
  if (!(n > 0 && n <= 100)) throw new InvalidArgumentError('expected a number in (0, 100]');
  return n;
};

export function addDemoOptions(c: Command): Command {
  return c
    .addOption(new Option('--strategy <name>', 'aggregation strategy, with the parameters of cli/src/demo-kit.ts demoStrategy (default: fedavg, none in the spec)').choices(STRATEGIES))
    .option('--epsilon <e>', 'differential privacy with this budget (delta 1e-5; sigma derived, docs/privacy.md)', epsilonArg)
    .addOption(
      new Option('--dp-level <unit>', 'what --epsilon protects: one patient (DP-SGD at each site) or one whole site (distributed discrete Gaussian)').choices(['patient', 'site']).default('patient'),
    )
    .option('--serve', 'after the study, keep the coordinator and the sites running and print their console URLs and tokens, until Ctrl-C');
}
