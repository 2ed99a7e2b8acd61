/**
 * The clinician's view of the patient twins, as routes of the site console:
 *
 *   GET  /twins                      patients with a twin (id, measurements, selected model), searchable (?q=)
 *   GET  /twins/:patientId           imaging series, growth plot (observed, fit, 90% band), parameters,
 *                                    scored and pending forecasts, radiomics headline, what-if form, Grad-CAM
 *   GET  /twins/:patientId/plot.json the growth plot as uPlot data (shared/web-assets/console.js)
 *   POST /twins/:patientId/whatif    the what-if form: current plan and the alternative side by side
 *   GET  /twins/:patientId/whatif.json?… the what-if chart (one line per schedule; same fields as the form)
 *   GET  /twins/:patientId/gradcam.png Grad-CAM overlay of the site's segmentation model on the patient
 *
 * The console server (not this file) authenticates every request in its hook before these routes run,
 * registers the urlencoded body parser, and sets the console's security headers. It calls
 * `registerTwinPages(app, ctx)` with:
 *
 *   db, audit   the site database and its audit log (what-if runs are audited as twin.simulated)
 *   dataDir     the site folder (the segmentation model is looked for in DATA_DIR/models/)
 *   page        a full page in the console's layout (nav, session, CSRF meta); `charts` loads uPlot
 *   form        the parsed, CSRF-checked body of a POST (throws on a bad token)
 *   csrf        the session's CSRF token, for the hidden field of the what-if form
 *
 * Every value from the database is escaped by `html`; a patient id in a URL must match
 * PATIENT_ID_RE (else 400) and name a patient of this site (else 404); ids are
 * encodeURIComponent'ed into every link. Nothing here writes patient data.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { asc, eq } from 'drizzle-orm';
import type { AuditLog } from '@twinfed/shared/audit/index';
import { csrfField, facts, html, notice, table, type SafeHtml } from '@twinfed/shared/web/index';
import type { ForecastBand, Schedule } from '@twinfed/shared/twin/index';
import type { SiteDb } from '../db/index.js';
import { imagingSeries, timepoints, twinPatients } from '../db/schema.js';
import { RADIOMICS_HEADLINE, TwinService } from '../twin/service.js';
import { bandSeries, twinChartData, twinPlotOf, type TwinPlot } from '../twin/plot.js';
import { gradCamAvailability, patientGradCam } from '../twin/gradcam.js';

export interface TwinPagesContext {
  db: SiteDb;
  audit: AuditLog;
  dataDir: string;
  /** Full page in the site console's layout (nav, CSRF, session); `charts` loads uPlot. */
  page(req: FastifyRequest, o: { title: string; body: SafeHtml; charts?: boolean }): string;
  /** The parsed, CSRF-checked form body of a POST (throws on a bad token). */
  form(req: FastifyRequest): Record<string, string>;
  /** The session's CSRF token, for the hidden `csrf` field of the forms these pages render. */
  csrf(req: FastifyRequest): string;
}

/** Patient ids the console accepts in a URL: the characters import gives them (folder names, CSV ids such as 8.6222186696850913E+18). */
export const PATIENT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const MAX_LIST = 500;
const MAX_QUERY_CHARS = 64;

const href = (id: string, rest = '') => `/twins/${encodeURIComponent(id)}${rest}`;
const fmt = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3));

// ------------------------------------------------------------------------------------------ what-if

/** The what-if form's fields (and the what-if chart's query): one alternative plan against the current one. */
export interface WhatIfInput {
  horizonDays: number;
  radiotherapy?: { dayStart: number; fractions: number; doseGyPerFraction: number };
  systemic?: { agentClass: string; startDay: number; stopDay: number };
}

const LIMITS = {
  horizonDays: [7, 730],
  fractions: [1, 60],
  doseGyPerFraction: [0.5, 25],
  day: [-3650, 3650],
  agentChars: 40,
  fieldChars: 12,
} as const;

const NUM_RE = /^-?\d+(\.\d+)?$/;

/** Validates the form; pure. Errors say which field and the allowed range. */
export function parseWhatIf(f: Record<string, string | undefined>): { ok: true; input: WhatIfInput; describe: string; query: string } | { ok: false; errors: string[] } {
  const errors: string[] = [];
  const str = (k: string) => (typeof f[k] === 'string' ? f[k].trim() : '');
  const num = (k: string, label: string, [lo, hi]: readonly [number, number], opts: { int?: boolean; optional?: boolean } = {}): number | undefined => {
    const s = str(k);
    if (s === '') {
      if (!opts.optional) errors.push(`${label}: required`);
      return undefined;
    }
    if (s.length > LIMITS.fieldChars || !NUM_RE.test(s) || (opts.int && !/^-?\d+$/.test(s))) {
      errors.push(`${label}: "${s.slice(0, LIMITS.fieldChars)}" is not ${opts.int ? 'a whole number' : 'a number'}`);
      return undefined;
    }
    const v = Number(s);
    if (v < lo || v > hi) {
      errors.push(`${label}: ${v} is outside ${lo} to ${hi}`);
      return undefined;
    }
    return v;
  };
  const horizonDays = num('horizonDays', 'Horizon (days after the last scan)', LIMITS.horizonDays, { int: true, optional: true }) ?? 180;
  const input: WhatIfInput = { horizonDays };
  const rtGiven = ['rtFractions', 'rtDoseGy', 'rtStartDay'].some((k) => str(k) !== '');
  if (rtGiven) {
    const fractions = num('rtFractions', 'Radiotherapy fractions', LIMITS.fractions, { int: true });
    const dose = num('rtDoseGy', 'Dose per fraction (Gy)', LIMITS.doseGyPerFraction);
    const start = num('rtStartDay', 'Radiotherapy start day', LIMITS.day);
    if (fractions !== undefined && dose !== undefined && start !== undefined) input.radiotherapy = { dayStart: start, fractions, doseGyPerFraction: dose };
  }
  const sysGiven = ['sysAgent', 'sysStartDay', 'sysStopDay'].some((k) => str(k) !== '');
  if (sysGiven) {
    const agent = str('sysAgent');
    if (!agent) errors.push('Systemic agent class: required');
    else if (agent.length > LIMITS.agentChars || !/^[\w .+-]+$/.test(agent)) errors.push(`Systemic agent class: letters, digits, space and . _ + - only, at most ${LIMITS.agentChars} characters`);
    const start = num('sysStartDay', 'Systemic start day', LIMITS.day);
    const stop = num('sysStopDay', 'Systemic stop day', LIMITS.day, { optional: true });
    if (start !== undefined && stop !== undefined && stop <= start) errors.push(`Systemic stop day: ${stop} must be after the start day ${start}`);
    if (agent && start !== undefined && errors.length === 0) input.systemic = { agentClass: agent, startDay: start, stopDay: stop ?? Infinity };
  }
  if (!rtGiven && !sysGiven) errors.push('Give a radiotherapy course, a systemic course, or both');
  if (errors.length) return { ok: false, errors };
  const parts: string[] = [];
  if (input.radiotherapy) parts.push(`RT ${input.radiotherapy.fractions} x ${input.radiotherapy.doseGyPerFraction} Gy from day ${input.radiotherapy.dayStart}`);
  if (input.systemic) parts.push(`${input.systemic.agentClass} from day ${input.systemic.startDay}${Number.isFinite(input.systemic.stopDay) ? ` to day ${input.systemic.stopDay}` : ' (ongoing)'}`);
  const q = new URLSearchParams({ horizonDays: String(horizonDays) });
  for (const k of ['rtFractions', 'rtDoseGy', 'rtStartDay', 'sysAgent', 'sysStartDay', 'sysStopDay']) if (str(k) !== '') q.set(k, str(k));
  return { ok: true, input, describe: parts.join(' + '), query: q.toString() };
}

const toSchedule = (w: WhatIfInput): Schedule => ({
  ...(w.radiotherapy ? { radiotherapy: [w.radiotherapy] } : {}),
  ...(w.systemic ? { systemic: [w.systemic] } : {}),
});

// ------------------------------------------------------------------------------------------ pages

export function registerTwinPages(app: FastifyInstance, ctx: TwinPagesContext): void {
  const twin = new TwinService(ctx.db, ctx.audit);

  const fail = (req: FastifyRequest, reply: FastifyReply, status: 400 | 404 | 422, title: string, text: string, body?: SafeHtml) =>
    reply
      .code(status)
      .type('text/html; charset=utf-8')
      .send(
        ctx.page(req, {
          title,
          body: html`${notice('error', text)}${body ?? null}
            <p><a href="/twins">All patient twins</a></p>`,
        }),
      );

  /** The patient id of the URL when it is well formed and names a patient of this site; otherwise the error page is sent. */
  const patientOf = (req: FastifyRequest, reply: FastifyReply, json = false): string | null => {
    const id = (req.params as { patientId?: unknown }).patientId;
    const known = typeof id === 'string' && PATIENT_ID_RE.test(id) && !!ctx.db.select({ p: twinPatients.patientId }).from(twinPatients).where(eq(twinPatients.patientId, id)).get();
    if (known) return id;
    const malformed = typeof id !== 'string' || !PATIENT_ID_RE.test(id);
    const text = malformed
      ? 'That is not a patient id: ids are 1 to 128 letters, digits and . _ + - (starting with a letter or digit).'
      : `No patient ${id} at this site. Patients are added by twinfed site import.`;
    if (json) void reply.code(malformed ? 400 : 404).send({ error: malformed ? 'TWF_E_BAD_REQUEST' : 'TWF_E_NOT_FOUND', message: text });
    else void fail(req, reply, malformed ? 400 : 404, malformed ? 'Not a patient id' : 'Patient not found', text);
    return null;
  };

  app.get('/twins', (req, reply) => {
    const raw = (req.query as { q?: unknown }).q;
    const q = typeof raw === 'string' ? raw.trim().slice(0, MAX_QUERY_CHARS) : '';
    const like = `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    const rows = ctx.db.$client
      .prepare(
        `select p.patient_id id, p.cohort cohort,
           (select count(distinct m.day) from measurements m where m.patient_id = p.patient_id) n,
           (select f.model from twin_fits f where f.patient_id = p.patient_id and f.selected = 1 order by f.id desc limit 1) model,
           (select f.method from twin_fits f where f.patient_id = p.patient_id and f.selected = 1 order by f.id desc limit 1) method
         from twin_patients p where p.patient_id like ? escape '\\' order by p.patient_id limit ${MAX_LIST + 1}`,
      )
      .all(like) as { id: string; cohort: string | null; n: number; model: string | null; method: string | null }[];
    const shown = rows.slice(0, MAX_LIST);
    const body = html`<form class="search" method="get" action="/twins" role="search">
        <label for="q">Patient id contains</label> <input id="q" name="q" type="search" maxlength="${MAX_QUERY_CHARS}" value="${q}" /> <button type="submit">Search</button>
      </form>
      ${table(
        'Patients with a twin',
        ['Patient', 'Cohort', 'Measurements (time points)', 'Selected growth model'],
        shown.map((r) => [
          html`<a href="${href(r.id)}">${r.id}</a>`,
          r.cohort ?? '',
          r.n,
          r.model ? `${r.model} (${r.method === 'map' ? 'MAP with site prior' : 'least squares'})` : 'not calibrated (needs 2 time points)',
        ]),
        { id: 'twins', empty: q ? `No patient id contains "${q}".` : 'No patients yet: twinfed site import adds them.' },
      )}
      ${rows.length > MAX_LIST ? html`<p class="note">Showing the first ${MAX_LIST}; search to narrow.</p>` : null}`;
    return reply.type('text/html; charset=utf-8').send(ctx.page(req, { title: 'Patient twins', body }));
  });

  app.get('/twins/:patientId', (req, reply) => {
    const id = patientOf(req, reply);
    if (id === null) return reply;
    return reply.type('text/html; charset=utf-8').send(ctx.page(req, { title: `Patient ${id}`, body: patientBody(req, id), charts: true }));
  });

  const patientBody = (req: FastifyRequest, id: string, whatIf?: SafeHtml, formValues: Record<string, string> = {}): SafeHtml => {
    const obs = twin.observations(id);
    const summary = twin.summary(id);
    const schedule = twin.schedule(id);
    const series = ctx.db
      .select({
        day: timepoints.day,
        modality: imagingSeries.modality,
        sequence: imagingSeries.sequence,
        format: imagingSeries.format,
        dims: imagingSeries.dimsJson,
        spacing: imagingSeries.spacingMmJson,
      })
      .from(imagingSeries)
      .innerJoin(timepoints, eq(timepoints.id, imagingSeries.timepointId))
      .where(eq(imagingSeries.patientId, id))
      .orderBy(asc(timepoints.day))
      .all();
    const list = (json: string, unit = '') => {
      try {
        return (JSON.parse(json) as number[]).map((v) => fmt(v)).join(' x ') + unit;
      } catch {
        return '';
      }
    };
    const scored = twin.scoreSheet(id);
    const calibration = twin.calibration();
    const pending = twin.pendingForecasts(id, calibration);
    const radiomics = twin.radiomics(id);
    const gc = gradCamAvailability(ctx.db, ctx.dataDir, id);
    const treatments = [
      ...(schedule?.radiotherapy ?? []).map((r) => `radiotherapy ${r.fractions} x ${r.doseGyPerFraction} Gy from day ${r.dayStart}`),
      ...(schedule?.systemic ?? []).map((c) => `${c.agentClass} from day ${c.startDay}${Number.isFinite(c.stopDay) ? ` to day ${c.stopDay}` : ' (ongoing)'}`),
    ];
    const v = (k: string, d = '') => formValues[k] ?? d;
    return html`${facts([
      ['Patient', id],
      ['Lesion followed', obs.lesion ?? 'none measured'],
      ['Measurements', `${obs.days.length} time point${obs.days.length === 1 ? '' : 's'}`],
      ['Treatments', treatments.length ? treatments.join('; ') : 'none recorded'],
      [
        'Twin',
        summary
          ? `${summary.model} (${summary.method === 'map' ? 'MAP with the site prior' : 'least squares'}), ${summary.points} points, AIC ${fmt(summary.aic)}`
          : 'not calibrated (needs at least 2 time points)',
      ],
    ])}
      ${whatIf ?? null}
      <section aria-labelledby="growth">
        <h2 id="growth">Growth</h2>
        ${
          obs.days.length
            ? html`<div class="chart" data-chart="${href(id, '/plot.json')}" role="img" aria-label="Tumour volume over time: observed, twin forecast and 90% prediction band">
                  Loading the growth plot…
                </div>
                <p class="note">Points: measured volumes (V = 0.52·d³ from a longest diameter). Line: the calibrated model; shaded: its 90% prediction band.</p>
                <p class="note" id="band-calibration">90% band: ${calibration.note}.</p>
                ${table(
                  'Measurements',
                  ['Day', 'Volume (mm³)'],
                  obs.days.map((d, i) => [d, fmt(obs.volumesMm3[i])]),
                )}`
            : html`<p class="empty">No tumour measurement for this patient yet.</p>`
        }
        ${
          summary
            ? table(
                'Model parameters',
                ['Parameter', 'Estimate', 'Unit', '95% interval'],
                summary.parameters.map((p) => [p.name, fmt(p.estimate), p.unit, `${fmt(p.lower95)} to ${fmt(p.upper95)}`]),
              )
            : null
        }
      </section>
      <section aria-labelledby="forecasts">
        <h2 id="forecasts">The twin's forecasts</h2>
        ${table(
          'Scored forecasts',
          ['Day', 'Predicted (mm³)', '90% band (mm³)', 'Observed (mm³)', '|Error| / max volume', 'Inside the band'],
          scored.map((s) => [s.day, fmt(s.predictedMm3), `${fmt(s.lower90Mm3)} to ${fmt(s.upper90Mm3)}`, fmt(s.observedMm3), fmt(s.absErrorNorm), s.inside90 ? 'yes' : 'no']),
          { id: 'scored', empty: 'No forecast scored yet: a forecast is scored when a later measurement arrives.' },
        )}
        ${table(
          `Pending forecasts (90% band ${calibration.applied ? `calibrated: n = ${calibration.n}, factor ${calibration.factor.toFixed(2)}` : 'of the model, not calibrated'})`,
          ['Day', 'Predicted (mm³)', '90% band (mm³)'],
          pending.map((p) => [p.day, fmt(p.predictedMm3), `${fmt(p.lower90Mm3)} to ${fmt(p.upper90Mm3)}`]),
          { empty: 'No pending forecast.' },
        )}
      </section>
      <section aria-labelledby="imaging">
        <h2 id="imaging">Imaging</h2>
        ${table(
          'Imaging series',
          ['Day', 'Modality', 'Sequence', 'Format', 'Voxels', 'Spacing (mm)'],
          series.map((s) => [s.day, s.modality, s.sequence ?? '', s.format, list(s.dims), list(s.spacing)]),
          { id: 'series', empty: 'No imaging series imported for this patient.' },
        )}
        ${table(
          'Radiomics (headline IBSI features; all are stored)',
          ['Day', 'Series', 'Lesion', 'Mask', ...RADIOMICS_HEADLINE],
          radiomics.map((m) => [m.day, m.modality, m.lesion, `${m.origin} (${m.settings})`, ...RADIOMICS_HEADLINE.map((t) => (t in m.features ? fmt(m.features[t]) : ''))]),
          { id: 'radiomics', empty: 'No radiomics: they are computed at import for images with a tumour mask.' },
        )}
        <h3>What the segmentation model looks at</h3>
        ${
          gc.ok
            ? html`<figure>
                <img
                  class="gradcam"
                  src="${href(id, '/gradcam.png')}"
                  alt="Grad-CAM heat map of the segmentation model on this patient's ${gc.modality} slice with the largest tumour area, with the reference (cyan) and predicted (red) contours"
                />
                <figcaption>
                  Grad-CAM of the site's segmentation model (study ${gc.studyId}, ${gc.title}) on the ${gc.modality} slice with the largest tumour area. Cyan: reference contour; red: predicted
                  contour; heat: where the evidence for tumour comes from.
                </figcaption>
              </figure>`
            : html`<p class="empty">No Grad-CAM overlay: ${gc.reason}</p>`
        }
      </section>
      <section aria-labelledby="whatif-h">
        <h2 id="whatif-h">What if?</h2>
        ${
          summary
            ? html`<form class="whatif" method="post" action="${href(id, '/whatif')}">
                ${csrfField(ctx.csrf(req))}
                <fieldset>
                  <legend>Radiotherapy</legend>
                  <label for="rtFractions">Fractions</label> <input id="rtFractions" name="rtFractions" inputmode="numeric" maxlength="${LIMITS.fieldChars}" value="${v('rtFractions')}" />
                  <label for="rtDoseGy">Dose per fraction (Gy)</label> <input id="rtDoseGy" name="rtDoseGy" inputmode="decimal" maxlength="${LIMITS.fieldChars}" value="${v('rtDoseGy')}" />
                  <label for="rtStartDay">Start day</label> <input id="rtStartDay" name="rtStartDay" inputmode="numeric" maxlength="${LIMITS.fieldChars}" value="${v('rtStartDay')}" />
                </fieldset>
                <fieldset>
                  <legend>Systemic therapy</legend>
                  <label for="sysAgent">Agent class</label> <input id="sysAgent" name="sysAgent" maxlength="${LIMITS.agentChars}" value="${v('sysAgent')}" /> <label for="sysStartDay">Start day</label>
                  <input id="sysStartDay" name="sysStartDay" inputmode="numeric" maxlength="${LIMITS.fieldChars}" value="${v('sysStartDay')}" />
                  <label for="sysStopDay">Stop day (empty: ongoing)</label> <input id="sysStopDay" name="sysStopDay" inputmode="numeric" maxlength="${LIMITS.fieldChars}" value="${v('sysStopDay')}" />
                </fieldset>
                <label for="horizonDays">Horizon (days after the last scan)</label>
                <input id="horizonDays" name="horizonDays" inputmode="numeric" maxlength="${LIMITS.fieldChars}" value="${v('horizonDays', '180')}" />
                <p class="note">Days count from treatment start. An alternative replaces the kind of treatment it names and keeps the rest of the current plan.</p>
                <button type="submit">Simulate</button>
              </form>`
            : html`<p class="empty">What-if needs a calibrated twin (at least 2 time points).</p>`
        }
      </section>`;
  };

  app.get('/twins/:patientId/plot.json', (req, reply) => {
    const id = patientOf(req, reply, true);
    if (id === null) return reply;
    const p = twinPlotOf(twin, id);
    if (!p) return reply.code(404).send({ error: 'TWF_E_NOT_FOUND', message: `patient ${id} has no tumour measurement to plot` });
    return reply.send(twinChartData(p));
  });

  type Sim = { ok: true; plot: TwinPlot; rows: unknown[][]; calibration: string } | { ok: false; message: string };
  const simulate = (id: string, w: WhatIfInput, describe: string): Sim => {
    let r: ReturnType<TwinService['simulate']>;
    try {
      r = twin.simulate(id, { alternative: toSchedule(w) }, w.horizonDays);
    } catch (e) {
      return { ok: false, message: (e as Error).message };
    }
    const obs = twin.observations(id);
    const end = Math.max(...obs.days) + w.horizonDays;
    const at = (b: ForecastBand, day: number) => {
      const found = b.days.findIndex((d) => d >= day);
      const i = found < 0 ? b.days.length - 1 : found;
      return { day: b.days[i], median: b.median[i], lower: b.lower[i], upper: b.upper[i] };
    };
    const named: [string, ForecastBand][] = [
      ['current plan', r.current],
      [`what-if: ${describe}`, r.alternatives.alternative],
    ];
    const rows = named.map(([label, b]) => {
      const a = at(b, end);
      const mid = at(b, Math.max(...obs.days) + Math.round(w.horizonDays / 2));
      return [label, `${fmt(mid.median)} (${fmt(mid.lower)} to ${fmt(mid.upper)}) at day ${mid.day}`, `${fmt(a.median)} (${fmt(a.lower)} to ${fmt(a.upper)}) at day ${a.day}`];
    });
    return {
      ok: true,
      rows,
      calibration: r.calibration.note,
      plot: {
        title: `Patient ${id}: what-if`,
        observed: obs.days.map((d, i) => ({ day: d, volumeMm3: obs.volumesMm3[i], usedInFit: true })),
        fitted: bandSeries(named[0][0], named[0][1]),
        whatIf: [bandSeries(named[1][0], named[1][1])],
        treatments: [],
      },
    };
  };

  // A what-if form is a few short fields: anything larger is refused before it is parsed.
  app.post('/twins/:patientId/whatif', { bodyLimit: 4096 }, (req, reply) => {
    const id = patientOf(req, reply);
    if (id === null) return reply;
    let fields: Record<string, string>;
    try {
      fields = ctx.form(req);
    } catch (e) {
      return fail(req, reply, 400, 'Form refused', `${(e as Error).message} Reload the page and submit again.`);
    }
    const parsed = parseWhatIf(fields);
    const again = (status: 200 | 400 | 422, text: SafeHtml) =>
      reply
        .code(status)
        .type('text/html; charset=utf-8')
        .send(ctx.page(req, { title: `Patient ${id}`, body: patientBody(req, id, html`<section id="whatif-result">${text}</section>`, fields), charts: true }));
    if (!parsed.ok)
      return again(
        400,
        notice(
          'error',
          html`The what-if was not run:
            <ul>
              ${parsed.errors.map((e) => html`<li>${e}</li>`)}
            </ul>`,
        ),
      );
    const sim = simulate(id, parsed.input, parsed.describe);
    if (!sim.ok) return again(422, notice('error', sim.message));
    ctx.audit.append({ actor: ctx.audit.ownerId, action: 'twin.simulated', detail: `${id}: console what-if ${parsed.describe}` });
    return again(
      200,
      html`<h2>What-if result</h2>
        ${table('Schedules side by side: tumour volume, median (90% band), mm³', ['Schedule', 'Half-way', 'At the horizon'], sim.rows, { id: 'whatif-table' })}
        <div class="chart" data-chart="${href(id, `/whatif.json?${parsed.query}`)}" role="img" aria-label="Tumour volume under the current plan and the what-if schedule">
          Loading the what-if plot…
        </div>
        <p class="note">Both schedules use the same parameter draws; the table gives each one's 90% band (${sim.calibration}).</p>`,
    );
  });

  app.get('/twins/:patientId/whatif.json', (req, reply) => {
    const id = patientOf(req, reply, true);
    if (id === null) return reply;
    const q = req.query as Record<string, unknown>;
    const parsed = parseWhatIf(Object.fromEntries(Object.entries(q).map(([k, v]) => [k, typeof v === 'string' ? v : undefined])));
    if (!parsed.ok) return reply.code(400).send({ error: 'TWF_E_BAD_REQUEST', message: parsed.errors.join('; ') });
    const sim = simulate(id, parsed.input, parsed.describe);
    if (!sim.ok) return reply.code(422).send({ error: 'TWF_E_WHATIF', message: sim.message });
    return reply.send(twinChartData(sim.plot, { bands: false }));
  });

  app.get('/twins/:patientId/gradcam.png', async (req, reply) => {
    const id = patientOf(req, reply, true);
    if (id === null) return reply;
    const r = await patientGradCam(ctx.db, ctx.dataDir, id);
    if ('reason' in r) return reply.code(404).type('text/plain; charset=utf-8').send(r.reason);
    return reply.type('image/png').send(r.png);
  });
}
