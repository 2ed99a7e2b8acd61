import type { Envelope } from '@twinfed/protocols';
import { decodeBody } from '@twinfed/shared/crypto/index';
import { studyRow, type HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** hello: the site is ready; it gets the welcome, then every study it is on the roster of (announce, key, open round). */
export function onHello(d: HandlerDeps, env: Envelope): HandlerResult {
  const body = decodeBody(env, 'hello');
  const siteId = env.header.senderId;
  const entry = d.received(env, `backend=${body.backend}`);
  d.greet(siteId);
  const rows = d.ctx.store.studiesOfSite(siteId);
  for (const row of rows) {
    const st = studyRow(d.ctx.store, row.studyId);
    if (st.state === 'draft' || row.excluded) continue;
    d.announce(st.studyId, siteId);
    d.syncSite(st.studyId, siteId);
  }
  for (const row of rows) void d.advance(row.studyId);
  return { entry, info: { authenticated: true } };
}
