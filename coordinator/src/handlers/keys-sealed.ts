import type { Envelope } from '@twinfed/protocols';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** keys.sealed: the dealer's signed handout (StudyKeys.onSealed); delivery follows. */
export function onKeysSealed(d: HandlerDeps, env: Envelope): HandlerResult {
  const r = d.keys.onSealed(env);
  void d.advance(env.header.studyId!);
  return r;
}
