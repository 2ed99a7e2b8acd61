import type { Envelope } from '@twinfed/protocols';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** mask.setup: signed mask keys and share boxes, during the setup phase (Rounds.onSetup). */
export function onMaskSetup(d: HandlerDeps, env: Envelope): HandlerResult {
  const r = d.rounds.onSetup(env);
  void d.advance(env.header.studyId!);
  return r;
}
