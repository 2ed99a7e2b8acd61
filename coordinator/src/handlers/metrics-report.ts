import { WireError, type Envelope } from '@twinfed/protocols';
import { decodeBody } from '@twinfed/shared/crypto/index';
import { requireStudyId, type HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** metrics.report: a joined site's evaluation of a round's model (task metrics by name, null when suppressed). */
export function onMetricsReport(d: HandlerDeps, env: Envelope): HandlerResult {
  const h = env.header;
  const b = decodeBody(env, 'metrics.report');
  const studyId = requireStudyId(h.studyId);
  if (!d.isJoined(studyId, h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} has not joined ${studyId}`);
  const names = b.metrics.map((x) => x.name);
  if (new Set(names).size !== names.length) throw new WireError('TWF_E_MALFORMED', `metrics: a name is listed twice (${names.join(',')})`);
  const entry = d.ctx.store.transaction((tx) => {
    tx.putMetrics(
      {
        studyId,
        round: b.evaluatedRound,
        siteId: h.senderId,
        valPatients: b.valPatients,
        trainLoss: b.trainLoss,
        trainMs: b.trainMs,
        encryptMs: b.encryptMs,
        uploadBytes: b.uploadBytes,
        reportedAtMs: d.ctx.now(),
      },
      b.metrics,
    );
    const shown = b.metrics.map((x) => `${x.name}=${x.value === null ? 'suppressed' : x.value.toFixed(4)}`).join(' ');
    return d.received(env, `${shown || 'no metrics'} round=${b.evaluatedRound}`);
  });
  return { entry };
}
