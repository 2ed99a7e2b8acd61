import type { Envelope, SiteMessageType } from '@twinfed/protocols';
import type { AuditEntry } from '@twinfed/shared/audit/index';
import type { EngineContext, HandlerResult, StudyRow } from '../context.js';
import type { StudyKeys } from '../keys.js';
import type { Rounds } from '../rounds.js';
import type { Exclusion } from '../states.js';

/** What a message handler may use: the shared context, keys and rounds, and the engine's connection-level helpers. */
export interface HandlerDeps {
  readonly ctx: EngineContext;
  readonly keys: StudyKeys;
  readonly rounds: Rounds;
  /** Writes the msg.received audit entry of an accepted message (its receipt names it). */
  received(env: Envelope, detail?: string): AuditEntry;
  /** The site said hello on its authenticated connection: welcome it (and the TLS rollover notice). */
  greet(siteId: string): void;
  announce(studyId: string, siteId: string): void;
  /** Brings a site up to date with a study (key, open round, completion). */
  syncSite(studyId: string, siteId: string): void;
  exclude(st: StudyRow, siteId: string, how: Exclusion, detail: string): void;
  isJoined(studyId: string, siteId: string): boolean;
  /** Schedules the study's next steps (serialised per study). */
  advance(studyId: string): Promise<void>;
}

export type Handler = (d: HandlerDeps, env: Envelope) => HandlerResult | Promise<HandlerResult>;
export type HandlerTable = Record<SiteMessageType, Handler>;
