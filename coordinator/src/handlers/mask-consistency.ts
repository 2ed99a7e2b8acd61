import type { Envelope } from '@twinfed/protocols';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** mask.consistency: a survivor's signature of (key set, survivors) (Rounds.onConsistency). */
export function onMaskConsistency(d: HandlerDeps, env: Envelope): HandlerResult {
  const r = d.rounds.onConsistency(env);
  void d.advance(env.header.studyId!);
  return r;
}
