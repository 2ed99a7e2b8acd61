import type { Envelope } from '@twinfed/protocols';
import { decodeBody } from '@twinfed/shared/crypto/index';
import type { HandlerResult } from '../context.js';
import type { HandlerDeps } from './types.js';

/** study.decline: the site's officer declined the manifest (or the site cannot take part); audited only. */
export function onStudyDecline(d: HandlerDeps, env: Envelope): HandlerResult {
  return { entry: d.received(env, `declined: ${decodeBody(env, 'study.decline').code}`) };
}
