import type { Envelope } from '@twinfed/protocols';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** update.chunk: one ciphertext, stored and added to the sum in the transaction that re-checks the round (Rounds.onChunk). */
export async function onUpdateChunk(d: HandlerDeps, env: Envelope): Promise<HandlerResult> {
  const r = await d.rounds.onChunk(env);
  if (r.complete) await d.advance(env.header.studyId!);
  return { entry: r.entry, ...(r.info ? { info: r.info } : {}) };
}
