import { StudySpecSchema, WireError, type StudyDraft, type StudyManifest } from '@twinfed/protocols';
import { responseStudySpec } from '@twinfed/shared/response/study';
import { csrfField, facts, html, notice, openSse, table, type SafeHtml } from '@twinfed/shared/web/index';
import type { ConsoleRouter } from './index.js';
import { badge, doneNotice, field, layout, select, studyTopic, type Ctx, type Out } from './common.js';
import { liveFragment, metricChart } from './live.js';

/** One form field of the study form: its spec path (also its input name) and how its text becomes a value. */
type Kind = 'num' | 'str' | 'list';
const COMMON: [string, Kind][] = [
  ['title', 'str'],
  ['rounds', 'num'],
  ['minSites', 'num'],
  ['roundDeadlineS', 'num'],
  ['training.epochsPerRound', 'num'],
  ['training.batchSize', 'num'],
  ['training.learningRate', 'num'],
  ['training.clipBound', 'num'],
  ['training.seed', 'num'],
];
const RESPONSE: [string, Kind][] = [
  ['model.arms', 'list'],
  ['model.l2', 'num'],
  ['data.minMeasurements', 'num'],
  ['data.trainPercent', 'num'],
  ['data.splitSalt', 'str'],
  ['data.minTrainPatients', 'num'],
];
const SEGMENTATION: [string, Kind][] = [
  ['model.base', 'num'],
  ['model.depth', 'num'],
  ['model.size', 'num'],
  ['data.modality', 'str'],
  ['data.labels', 'list'],
];
const STRATEGIES = ['fedavg', 'fedprox', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'];

const DEFAULTS: Record<string, string> = (() => {
  const r = responseStudySpec(10);
  return {
    title: '',
    task: 'response',
    rounds: '10',
    minSites: '3',
    roundDeadlineS: '120',
    'training.epochsPerRound': String(r.training.epochsPerRound),
    'training.batchSize': String(r.training.batchSize),
    'training.learningRate': String(r.training.learningRate),
    'training.clipBound': String(r.training.clipBound),
    'training.seed': String(r.training.seed),
    'model.arms': r.model.arms.join(', '),
    'model.l2': String(r.model.l2),
    'data.minMeasurements': String(r.data.minMeasurements),
    'data.trainPercent': String(r.data.trainPercent),
    'data.splitSalt': r.data.splitSalt,
    'data.minTrainPatients': String(r.data.minTrainPatients),
    'model.base': '8',
    'model.depth': '2',
    'model.size': '64',
    'data.modality': 'PET',
    'data.labels': 'background, tumour',
    'strategy.name': 'fedavg',
    'strategy.mu': '0.01',
    'dp.level': 'none',
    'dp.epsilon': '8',
    'dp.delta': '0.00001',
    'dp.clipNorm': '1',
    'dp.samplingRate': '0.1',
  };
})();

function setPath(o: Record<string, unknown>, path: string, v: unknown): void {
  const keys = path.split('.');
  let cur = o;
  for (const k of keys.slice(0, -1)) cur = (cur[k] ??= {}) as Record<string, unknown>;
  cur[keys[keys.length - 1]] = v;
}

function value(kind: Kind, text: string): unknown {
  const t = text.trim();
  if (kind === 'str') return t;
  if (kind === 'list')
    return t
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  // An empty or non-numeric entry stays text, so the schema names the field ("expected number").
  return t === '' ? undefined : Number.isFinite(Number(t)) ? Number(t) : t;
}

/** The study spec a filled-in form stands for (validated afterwards with StudySpecSchema, like POST /api/studies). */
export function specFromForm(f: URLSearchParams): Record<string, unknown> {
  const get = (k: string) => f.get(k) ?? '';
  const task = get('task') === 'segmentation' ? 'segmentation' : 'response';
  const spec: Record<string, unknown> = { task };
  for (const [k, kind] of [...COMMON, ...(task === 'response' ? RESPONSE : SEGMENTATION)]) {
    const v = value(kind, get(k));
    if (v !== undefined) setPath(spec, k, v);
  }
  if (task === 'response') {
    setPath(spec, 'model.arch', 'logreg');
    setPath(spec, 'model.features', 'first3-v1');
    setPath(spec, 'model.nClasses', 3);
    setPath(spec, 'model.initSeed', 7);
    setPath(spec, 'data.source', 'twin-measurements');
  } else {
    const labels = (spec.data as { labels?: unknown } | undefined)?.labels;
    setPath(spec, 'model.arch', 'unet2d');
    setPath(spec, 'model.inChannels', 1);
    setPath(spec, 'model.nClasses', Array.isArray(labels) ? labels.length : 2);
    setPath(spec, 'model.initSeed', 3);
    setPath(spec, 'data.minTrainSlices', 1);
  }
  const strategy = get('strategy.name') || 'fedavg';
  if (strategy !== 'fedavg') spec.strategy = strategy === 'fedprox' ? { name: strategy, mu: value('num', get('strategy.mu')) } : { name: strategy };
  const level = get('dp.level');
  if (level === 'patient' || level === 'site') {
    const dp: Record<string, unknown> = { level, epsilon: value('num', get('dp.epsilon')), delta: value('num', get('dp.delta')), clipNorm: value('num', get('dp.clipNorm')) };
    if (level === 'patient') dp.samplingRate = value('num', get('dp.samplingRate'));
    spec.dp = dp;
  }
  return spec;
}

export interface SpecErrors {
  /** Message per field path (the input of that name shows it). */
  byField: Record<string, string>;
  /** Every problem with its path, for the summary list. */
  all: { path: string; message: string }[];
}

/** Validates a spec with the REST API's schema; null when it is valid. */
export function specErrors(spec: unknown): SpecErrors | null {
  const p = StudySpecSchema.safeParse(spec);
  if (p.success) return null;
  const out: SpecErrors = { byField: {}, all: [] };
  for (const i of p.error.issues) {
    const path = i.path.map(String).join('.') || '(spec)';
    out.all.push({ path, message: i.message });
    out.byField[path] ??= i.message;
  }
  return out;
}

function errorSummary(e: SpecErrors | null, wire: WireError | null): SafeHtml | null {
  if (wire) return notice('error', `${wire.message}${wire.detail ? `: ${wire.detail}` : ''} (${wire.code})`);
  if (!e) return null;
  return html`<div class="notice error" role="alert">
    <p>The study was not created; correct these fields:</p>
    <ul>
      ${e.all.map((x) => html`<li><code>${x.path}</code>: ${x.message}</li>`)}
    </ul>
  </div>`;
}

function createForm(c: Ctx, values: Record<string, string>, errors: SpecErrors | null): SafeHtml {
  const v = (k: string) => values[k] ?? DEFAULTS[k] ?? '';
  const err = (k: string) => errors?.byField[k];
  const f = (name: string, label: string, type: 'text' | 'number' = 'number', hint?: string, step?: string) =>
    field({ name, label, value: v(name), type, error: err(name), ...(hint ? { hint } : {}), ...(step ? { step } : {}) });
  return html`<form class="stack" method="post" action="/studies" aria-labelledby="create-h" novalidate>
    ${csrfField(c.session.csrf)} ${f('title', 'Title', 'text')}
    ${select({
      name: 'task',
      label: 'Task',
      value: v('task'),
      options: [
        ['response', 'Treatment response (logistic regression on twin measurements)'],
        ['segmentation', 'Tumour segmentation (U-Net on PET slices)'],
      ],
      error: err('task'),
    })}
    ${f('rounds', 'Rounds that must close')} ${f('minSites', 'Fewest sites per round (at least 3)')} ${f('roundDeadlineS', 'Round deadline, seconds')}
    <fieldset>
      <legend>Local training</legend>
      ${f('training.epochsPerRound', 'Epochs per round', 'number', undefined, 'any')} ${f('training.batchSize', 'Batch size')}
      ${f('training.learningRate', 'Learning rate', 'number', undefined, 'any')} ${f('training.clipBound', 'Update clip bound', 'number', undefined, 'any')} ${f('training.seed', 'Seed')}
    </fieldset>
    <fieldset>
      <legend>Response model (used when the task is treatment response)</legend>
      ${f('model.arms', 'Arms, comma-separated', 'text')} ${f('model.l2', 'L2 penalty', 'number', undefined, 'any')} ${f('data.minMeasurements', 'Fewest measurements per patient')}
      ${f('data.trainPercent', 'Training share of patients, percent')} ${f('data.splitSalt', 'Split salt', 'text')} ${f('data.minTrainPatients', 'Fewest training patients per site')}
    </fieldset>
    <fieldset>
      <legend>Segmentation model (used when the task is segmentation)</legend>
      ${f('model.base', 'U-Net base channels')} ${f('model.depth', 'U-Net depth')} ${f('model.size', 'Slice size, pixels')}
      ${select({
        name: 'data.modality',
        label: 'Modality',
        value: v('data.modality'),
        options: [
          ['PET', 'PET'],
          ['CT', 'CT'],
          ['MR', 'MR'],
        ],
        error: err('data.modality'),
      })}
      ${f('data.labels', 'Labels, comma-separated (background first)', 'text')}
    </fieldset>
    <fieldset>
      <legend>Aggregation</legend>
      ${select({ name: 'strategy.name', label: 'Strategy', value: v('strategy.name'), options: STRATEGIES.map((s) => [s, s]), error: err('strategy.name') ?? err('strategy') })}
      ${f('strategy.mu', 'FedProx mu (fedprox only)', 'number', undefined, 'any')}
    </fieldset>
    <fieldset>
      <legend>Differential privacy</legend>
      ${select({
        name: 'dp.level',
        label: 'Level',
        value: v('dp.level'),
        options: [
          ['none', 'none'],
          ['patient', 'patient (DP-SGD at each site)'],
          ['site', 'site (distributed discrete Gaussian)'],
        ],
        error: err('dp.level') ?? err('dp'),
      })}
      ${f('dp.epsilon', 'Epsilon budget', 'number', undefined, 'any')} ${f('dp.delta', 'Delta', 'number', undefined, 'any')} ${f('dp.clipNorm', 'Clip norm', 'number', undefined, 'any')}
      ${f('dp.samplingRate', 'Sampling rate (patient level)', 'number', undefined, 'any')}
    </fieldset>
    <button type="submit">Create draft study</button>
  </form>`;
}

function jsonForm(c: Ctx, text: string): SafeHtml {
  return html`<form class="stack" method="post" action="/studies/json" aria-labelledby="json-h">
    ${csrfField(c.session.csrf)}
    <label for="f-spec">Study spec (JSON, as for <code>twinfed lead create-study</code>; examples in examples/specs/)</label>
    <textarea id="f-spec" name="spec" required spellcheck="false">${text}</textarea>
    <button type="submit">Create from JSON</button>
  </form>`;
}

function studiesPage(
  c: Ctx,
  o: { values?: Record<string, string>; errors?: SpecErrors | null; wire?: WireError | null; json?: string; jsonErrors?: SpecErrors | null; jsonWire?: WireError | null; status?: number } = {},
): Out {
  const rows = c.deps.engine.listStudies().map((s) => {
    const st = c.deps.engine.studyStatus(s.studyId);
    return [html`<a href="/studies/${s.studyId}">${s.studyId}</a>`, s.title, badge(s.state), `${st.closedRounds} of ${st.rounds}`, st.participants.length || '—'];
  });
  const lead = c.role === 'lead';
  const body = html`${doneNotice(c.query)} ${table('Studies', ['Study', 'Title', 'State', 'Rounds closed', 'Sites'], rows, { id: 'studies', empty: 'No studies yet.' })}
  ${
    lead
      ? html`<h2 id="create-h">Create a study</h2>
          ${errorSummary(o.errors ?? null, o.wire ?? null)} ${createForm(c, o.values ?? {}, o.errors ?? null)}
          <h2 id="json-h">Or paste a spec</h2>
          ${errorSummary(o.jsonErrors ?? null, o.jsonWire ?? null)} ${jsonForm(c, o.json ?? '')}`
      : html`<p class="note">Signed in as auditor: read-only.</p>`
  }`;
  return layout(c, 'Studies', body, { status: o.status ?? 200 });
}

const studyIdOf = (c: Ctx) => {
  const id = c.params.id ?? '';
  if (!/^study-[\w-]{1,64}$/.test(id)) throw new WireError('TWF_E_NOT_FOUND', `no study ${id.slice(0, 80)}`);
  return id;
};

function actions(c: Ctx, studyId: string): SafeHtml | null {
  if (c.role !== 'lead') return null;
  const st = c.deps.engine.studyStatus(studyId);
  const csrf = csrfField(c.session.csrf);
  const out: SafeHtml[] = [];
  if (st.state === 'draft') {
    const sites = c.deps.engine.listSites().filter((s) => !s.revokedAt);
    out.push(
      html`<form class="stack" method="post" action="/studies/${studyId}/start">
        ${csrf}
        <fieldset>
          <legend>Roster (default: every enrolled site)</legend>
          ${
            sites.length
              ? sites.map(
                  (s, i) =>
                    html`<div>
                      <input type="checkbox" id="site-${i}" name="sites" value="${s.siteId}" checked /> <label for="site-${i}">${s.siteName} <code>${s.siteId}</code> · ${s.fingerprint}</label>
                    </div>`,
                )
              : html`<p class="empty">No site is enrolled yet.</p>`
          }
        </fieldset>
        ${field({ name: 'keyDealers', label: 'Key dealers in order, comma-separated site ids (default: the roster order)', value: '' })}
        <button type="submit">Start study</button>
      </form>`,
    );
  }
  if (st.state === 'stopped') out.push(html`<form class="inline" method="post" action="/studies/${studyId}/start">${csrf}<button type="submit">Resume study</button></form>`);
  if (st.state === 'running') {
    out.push(
      html`<form class="inline" method="post" action="/studies/${studyId}/stop" data-confirm="Stop this study? Its open round fails.">
        ${csrf}<button type="submit" class="danger">Stop study</button>
      </form>`,
    );
    out.push(
      html`<form class="stack" method="post" action="/studies/${studyId}/abort" data-confirm="Abort the open round?">
        ${csrf} ${field({ name: 'reason', label: 'Reason for aborting the open round', value: '' })}<button type="submit" class="secondary">Abort round</button>
      </form>`,
    );
  }
  const evictable = st.participants.filter((p) => !p.excluded);
  if ((st.state === 'running' || st.state === 'stopped') && evictable.length) {
    out.push(
      html`<form class="stack" method="post" action="/studies/${studyId}/evict" data-confirm="Evict this participant? A new study key is dealt without it.">
        ${csrf} ${select({ name: 'siteId', label: 'Participant to evict', options: evictable.map((p) => [p.siteId, `${p.siteName} (${p.siteId})`]) })}
        ${field({ name: 'reason', label: 'Reason for the eviction', value: '' })}<button type="submit" class="danger">Evict participant</button>
      </form>`,
    );
  }
  return out.length
    ? html`<h2>Actions</h2>
        <div class="grid">${out.map((f) => html`<div class="card">${f}</div>`)}</div>`
    : null;
}

function studyPage(c: Ctx, studyId: string, problem: WireError | null = null): Out {
  const st = c.deps.engine.studyStatus(studyId);
  const m = c.deps.engine.manifestOf(studyId);
  const man = m.manifest as StudyDraft | StudyManifest;
  const body = html`${problem ? notice('error', `${problem.message}${problem.detail ? `: ${problem.detail}` : ''} (${problem.code})`) : doneNotice(c.query)}
    ${facts([
      ['Study', html`<code>${studyId}</code>`],
      ['Title', st.title],
      ['Task', man.task],
      ['Rounds planned', st.rounds],
      ['Fewest sites per round', man.minSites],
      ['Strategy', man.strategy?.name ?? 'fedavg'],
      ['Differential privacy', man.dp ? `${man.dp.level} level, ε ${man.dp.epsilon}, δ ${man.dp.delta}, σ ${man.dp.noiseMultiplier ?? '—'}` : 'none'],
      ['Manifest', m.draft ? 'draft (no roster yet)' : html`version ${st.manifestVersion}, hash <code>${st.manifestHash}</code>`],
    ])}
    ${actions(c, studyId)}
    <h2 id="live-h">Live</h2>
    <section class="live" aria-labelledby="live-h" aria-live="polite" data-live="/studies/${studyId}/live" data-events="/studies/${studyId}/events" data-updated="0">
      ${liveFragment(c.deps, studyId)}
    </section>
    <details>
      <summary>Manifest (JSON)</summary>
      <pre class="mono">${JSON.stringify(man, null, 2)}</pre>
    </details>`;
  return layout(c, st.title, body, { charts: true, status: problem ? problem.status : 200 });
}

/** An engine refusal of an action is shown on the study page (never a 500). */
function act(c: Ctx, studyId: string, fn: () => void, done: string): Out {
  try {
    fn();
  } catch (e) {
    if (e instanceof WireError) return studyPage(c, studyId, e);
    throw e;
  }
  return { redirect: `/studies/${studyId}?done=${done}` };
}

function list(text: string | null): string[] | undefined {
  const l = (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return l.length ? l : undefined;
}

export function registerStudyPages(r: ConsoleRouter): void {
  r.get('/', (c) => studiesPage(c));
  r.get('/studies', () => ({ redirect: '/' }));
  r.post('/studies', async (c) => {
    const values = Object.fromEntries([...c.form.entries()].filter(([k]) => k !== 'csrf'));
    const spec = specFromForm(c.form);
    const errors = specErrors(spec);
    if (errors) return studiesPage(c, { values, errors, status: 400 });
    try {
      const { studyId } = await c.deps.engine.createStudy(spec);
      return { redirect: `/studies/${studyId}?done=created` };
    } catch (e) {
      if (e instanceof WireError) return studiesPage(c, { values, wire: e, status: e.status });
      throw e;
    }
  });
  r.post('/studies/json', async (c) => {
    const text = c.form.get('spec') ?? '';
    let spec: unknown;
    try {
      spec = JSON.parse(text);
    } catch (e) {
      return studiesPage(c, { json: text, jsonErrors: { byField: {}, all: [{ path: '(JSON)', message: (e as Error).message }] }, status: 400 });
    }
    const jsonErrors = specErrors(spec);
    if (jsonErrors) return studiesPage(c, { json: text, jsonErrors, status: 400 });
    try {
      const { studyId } = await c.deps.engine.createStudy(spec);
      return { redirect: `/studies/${studyId}?done=created` };
    } catch (e) {
      if (e instanceof WireError) return studiesPage(c, { json: text, jsonWire: e, status: e.status });
      throw e;
    }
  });
  r.get('/studies/:id', (c) => studyPage(c, studyIdOf(c)));
  r.get('/studies/:id/live', (c) => {
    const id = studyIdOf(c);
    return { body: liveFragment(c.deps, id).value };
  });
  r.get('/studies/:id/chart.json', (c) => ({ body: JSON.stringify(metricChart(c.deps, studyIdOf(c))), contentType: 'application/json; charset=utf-8' }));
  r.stream('/studies/:id/events', (c, reply) => {
    const id = studyIdOf(c);
    c.deps.engine.studyStatus(id); // 404 before the stream opens
    reply.hijack();
    let timer: NodeJS.Timeout | null = null;
    let off = () => {};
    const s = openSse(c.req.raw, reply.raw, {
      onClose: () => {
        off();
        if (timer) clearTimeout(timer);
      },
    });
    // Coalesced: a burst of chunk uploads becomes one event per 250 ms, not one per message.
    off = c.deps.hub.subscribe(studyTopic(id), () => {
      timer ??= setTimeout(() => {
        timer = null;
        s.send('changed', { studyId: id });
      }, 250);
    });
  });
  r.post('/studies/:id/start', (c) => {
    const id = studyIdOf(c);
    const st = c.deps.engine.studyStatus(id);
    const sites = c.form.getAll('sites');
    const keyDealers = list(c.form.get('keyDealers'));
    return act(
      c,
      id,
      () => c.deps.engine.startStudy(id, st.state === 'draft' ? { ...(sites.length ? { sites } : {}), ...(keyDealers ? { keyDealers } : {}) } : {}),
      st.state === 'stopped' ? 'resumed' : 'started',
    );
  });
  r.post('/studies/:id/stop', (c) => {
    const id = studyIdOf(c);
    return act(c, id, () => c.deps.engine.stopStudy(id), 'stopped');
  });
  r.post('/studies/:id/abort', (c) => {
    const id = studyIdOf(c);
    const reason = (c.form.get('reason') ?? '').trim().slice(0, 500) || 'no reason given';
    return act(c, id, () => void c.deps.engine.abortRound(id, reason), 'aborted');
  });
  r.post('/studies/:id/evict', (c) => {
    const id = studyIdOf(c);
    const reason = (c.form.get('reason') ?? '').trim().slice(0, 500) || 'no reason given';
    return act(c, id, () => c.deps.engine.evictSite(id, c.form.get('siteId') ?? '', reason), 'evicted');
  });
}
