import { onAggregateRefused } from './aggregate-refused.js';
import { onAggregateRequest } from './aggregate-request.js';
import { onHello } from './hello.js';
import { onKeysSealed } from './keys-sealed.js';
import { onMaskConsistency } from './mask-consistency.js';
import { onMaskSetup } from './mask-setup.js';
import { onMaskUnmask } from './mask-unmask.js';
import { onMetricsReport } from './metrics-report.js';
import { onRoundDecline } from './round-decline.js';
import { onStudyDecline } from './study-decline.js';
import { onStudyJoin } from './study-join.js';
import { onStudyWithdraw } from './study-withdraw.js';
import type { HandlerTable } from './types.js';
import { onUpdateChunk } from './update-chunk.js';

export type { Handler, HandlerDeps, HandlerTable } from './types.js';

/** One handler per site message type; the type system makes the table complete. */
export const HANDLERS: HandlerTable = {
  hello: onHello,
  'study.join': onStudyJoin,
  'study.decline': onStudyDecline,
  'study.withdraw': onStudyWithdraw,
  'round.decline': onRoundDecline,
  'keys.sealed': onKeysSealed,
  'mask.setup': onMaskSetup,
  'update.chunk': onUpdateChunk,
  'mask.consistency': onMaskConsistency,
  'mask.unmask': onMaskUnmask,
  'metrics.report': onMetricsReport,
  'aggregate.request': onAggregateRequest,
  'aggregate.refused': onAggregateRefused,
};
