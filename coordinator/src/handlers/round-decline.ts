import type { Envelope } from '@twinfed/protocols';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** round.decline: the site sits out the open round (Rounds.onDecline); the policy then goes on without it, or fails or stops cleanly. */
export async function onRoundDecline(d: HandlerDeps, env: Envelope): Promise<HandlerResult> {
  const r = d.rounds.onDecline(env);
  await d.advance(env.header.studyId!);
  return r;
}
