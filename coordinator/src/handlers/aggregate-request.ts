import type { Envelope } from '@twinfed/protocols';
import { requireStudyId, type HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** aggregate.request: a joined site catching up on closed rounds (Rounds.onAggregateRequest). */
export function onAggregateRequest(d: HandlerDeps, env: Envelope): HandlerResult {
  const h = env.header;
  return d.rounds.onAggregateRequest(env, d.isJoined(requireStudyId(h.studyId), h.senderId));
}
