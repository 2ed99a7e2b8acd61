import { WireError, type Envelope } from '@twinfed/protocols';
import { decodeBody } from '@twinfed/shared/crypto/index';
import { manifestOfRow, requireStudyId, studyRow, type HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** study.join: only roster sites, with the current manifest hash their officer approved, while the study runs. */
export function onStudyJoin(d: HandlerDeps, env: Envelope): HandlerResult {
  const h = env.header;
  const body = decodeBody(env, 'study.join');
  const store = d.ctx.store;
  const studyId = requireStudyId(h.studyId);
  const entry = store.transaction((tx) => {
    const st = studyRow(tx, studyId);
    if (st.state === 'draft') throw new WireError('TWF_E_UNKNOWN_STUDY', st.studyId);
    if (st.state !== 'running') throw new WireError('TWF_E_STUDY_STATE', `study ${st.studyId} is ${st.state}`);
    const m = manifestOfRow(st);
    if (!m.participants.some((p) => p.siteId === h.senderId))
      throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not in the roster the officers approved; the lead must add it (a new manifest version every officer approves again)`);
    const prev = tx.studySite(st.studyId, h.senderId);
    if (prev?.excluded) throw new WireError('TWF_E_EVICTED', `${h.senderId} is ${prev.excluded} from ${st.studyId}`);
    if (body.manifestHash !== st.manifestHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', `site approved ${body.manifestHash.slice(0, 12)}, study is ${st.manifestHash.slice(0, 12)}`);
    const rejoin = prev?.manifestHash === st.manifestHash;
    tx.updateStudySite(st.studyId, h.senderId, {
      manifestHash: body.manifestHash,
      joinedAtMs: rejoin && prev?.joinedAtMs ? prev.joinedAtMs : d.ctx.now(),
      trainSamples: body.trainSamples,
      valPatients: body.valPatients,
    });
    return d.received(env, `trainSamples=${body.trainSamples} valPatients=${body.valPatients}`);
  });
  d.syncSite(studyId, h.senderId);
  void d.advance(studyId);
  return { entry, info: { joined: true } };
}
