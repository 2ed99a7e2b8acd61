import type { Envelope } from '@twinfed/protocols';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** mask.unmask: a revealer's shares (Rounds.onUnmask). */
export function onMaskUnmask(d: HandlerDeps, env: Envelope): HandlerResult {
  const r = d.rounds.onUnmask(env);
  void d.advance(env.header.studyId!);
  return r;
}
