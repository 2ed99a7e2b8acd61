import type { Envelope } from '@twinfed/protocols';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** aggregate.refused: a site found a decrypted aggregate invalid (Rounds.onRefused). */
export function onAggregateRefused(d: HandlerDeps, env: Envelope): HandlerResult {
  const r = d.rounds.onRefused(env);
  void d.advance(env.header.studyId!);
  return r;
}
