import { WireError, type Envelope } from '@twinfed/protocols';
import { decodeBody } from '@twinfed/shared/crypto/index';
import { requireStudyId, studyRow, type HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** study.withdraw: the site's officer withdrew the approval; it takes part in no round opened afterwards. */
export function onStudyWithdraw(d: HandlerDeps, env: Envelope): HandlerResult {
  const h = env.header;
  const b = decodeBody(env, 'study.withdraw');
  const st = studyRow(d.ctx.store, requireStudyId(h.studyId));
  const row = d.ctx.store.studySite(st.studyId, h.senderId);
  if (!row) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not in the roster of ${st.studyId}`);
  const entry = d.received(env, `withdrawn by ${b.officer}: ${b.reason}`);
  if (!row.excluded) d.exclude(st, h.senderId, 'withdrawn', `officer ${b.officer}: ${b.reason}`);
  void d.advance(st.studyId);
  return { entry };
}
