import type { FastifyRequest } from 'fastify';
import { html, notice, page, type ConsoleSession, type EventHub, type NavItem, type SafeHtml } from '@twinfed/shared/web/index';
import type { CoordinatorConfig } from '../config.js';
import type { CoordinatorEngine } from '../engine.js';
import type { CoordinatorStore } from '../store/index.js';

/** Who signs in to the coordinator's console: the consortium lead (acts) or an auditor (reads). */
export type Role = 'lead' | 'auditor';

export interface ConsoleDeps {
  engine: CoordinatorEngine;
  /** The engine's store, read for what the REST views do not return (per-site round progress). */
  store: CoordinatorStore;
  config: CoordinatorConfig;
  /** Topic per study (studyTopic); the engine's onChange publishes to it. */
  hub: EventHub<{ studyId: string }>;
  /** Served over TLS: the session cookie is Secure. */
  secure: boolean;
  now?: () => number;
}

/** What a handler gets: the request, its session, the parsed form (POST) and query. */
export interface Ctx {
  req: FastifyRequest;
  session: ConsoleSession<Role>;
  role: Role;
  deps: ConsoleDeps;
  params: Record<string, string>;
  query: Record<string, string>;
  form: URLSearchParams;
  path: string;
}

/** A handler's answer: a page (status default 200), or a redirect after a successful POST (303). */
export type Out = { status?: number; body: string; contentType?: string } | { redirect: string };

export const NAV: NavItem[] = [
  { href: '/', label: 'Studies' },
  { href: '/sites', label: 'Sites' },
  { href: '/audit', label: 'Audit log' },
];

export function studyTopic(studyId: string): string {
  return `study:${studyId}`;
}

/** One console page of the signed-in user (nav, role, sign-out, CSRF meta). */
export function layout(c: Ctx, title: string, body: SafeHtml, opts: { charts?: boolean; status?: number } = {}): Out {
  return {
    status: opts.status ?? 200,
    body: page({
      app: 'coordinator',
      instance: c.deps.engine.coordinatorId,
      title,
      body,
      nav: NAV,
      path: c.path,
      user: { role: c.role },
      csrf: c.session.csrf,
      ...(opts.charts ? { charts: true } : {}),
    }),
  };
}

/** Fixed messages a redirect may name (?done=key): nothing from the request is ever echoed into a notice. */
export const DONE: Record<string, string> = {
  created: 'Study created as a draft. Start it when the sites are enrolled.',
  started: 'Study started: the manifest was announced to the roster; each privacy officer must approve it.',
  resumed: 'Study resumed.',
  stopped: 'Study stopped; its open round failed.',
  aborted: 'Round aborted; a fresh round opens when the sites are ready.',
  evicted: 'Participant evicted: it takes no further rounds; a new study key is dealt without it.',
  revoked: 'Site revoked: disconnected, refused at connect, excluded from every study.',
};

export function doneNotice(q: Record<string, string>): SafeHtml | null {
  const k = q.done;
  return k && Object.prototype.hasOwnProperty.call(DONE, k) ? notice('ok', DONE[k]) : null;
}

/** A labelled input; `error` is shown next to it and linked with aria-describedby. */
export function field(o: {
  name: string;
  label: string;
  value?: string | number | undefined;
  type?: 'text' | 'number' | 'date' | 'search';
  step?: string;
  hint?: string;
  error?: string | undefined;
  required?: boolean;
}): SafeHtml {
  const id = `f-${o.name.replace(/[^\w-]/g, '-')}`;
  const described = [o.hint ? `${id}-hint` : null, o.error ? `${id}-err` : null].filter(Boolean).join(' ');
  return html`<div class="field">
    <label for="${id}">${o.label}</label>
    <input
      id="${id}"
      name="${o.name}"
      type="${o.type ?? 'text'}"
      ${o.step ? html` step="${o.step}"` : null}
      value="${o.value ?? ''}"
      ${o.required ? html` required` : null}${o.error ? html` aria-invalid="true"` : null}${described ? html` aria-describedby="${described}"` : null}
    />
    ${o.hint ? html`<small id="${id}-hint">${o.hint}</small>` : null}${o.error ? html`<div class="field-error" id="${id}-err">${o.error}</div>` : null}
  </div>`;
}

/** A labelled select. */
export function select(o: { name: string; label: string; options: [string, string][]; value?: string; error?: string | undefined; hint?: string }): SafeHtml {
  const id = `f-${o.name.replace(/[^\w-]/g, '-')}`;
  const described = [o.hint ? `${id}-hint` : null, o.error ? `${id}-err` : null].filter(Boolean).join(' ');
  return html`<div class="field">
    <label for="${id}">${o.label}</label>
    <select id="${id}" name="${o.name}" ${o.error ? html` aria-invalid="true"` : null}${described ? html` aria-describedby="${described}"` : null}>
      ${o.options.map(([v, l]) => html`<option value="${v}" ${v === o.value ? html` selected` : null}>${l}</option>`)}
    </select>
    ${o.hint ? html`<small id="${id}-hint">${o.hint}</small>` : null}${o.error ? html`<div class="field-error" id="${id}-err">${o.error}</div>` : null}
  </div>`;
}

export function iso(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '—' : new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 120) return `${m.toFixed(1)} min`;
  return `${(m / 60).toFixed(1)} h`;
}

/** A state badge (class from a fixed set, text escaped). */
export function badge(state: string): SafeHtml {
  return html`<span class="state ${state.replace(/[^\w-]/g, '')}">${state}</span>`;
}
