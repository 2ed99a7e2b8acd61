import type { Envelope } from '@twinfed/protocols';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** update.chunk: one ciphertext, added on an aggregation worker and stored in the transaction that re-checks the round (Rounds.onChunk). */
export async function onUpdateChunk(d: HandlerDeps, env: Envelope): Promise<HandlerResult> {
  const r = await d.rounds.onChunk(env);
  // Not awaited: the step that ends the upload phase writes the round's sums (seconds at 10M
  // parameters), and this chunk's receipt need not wait for that.
  if (r.complete) void d.advance(env.header.studyId!);
  return { entry: r.entry, ...(r.info ? { info: r.info } : {}) };
}
