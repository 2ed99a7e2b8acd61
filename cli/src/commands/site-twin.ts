import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { TwinService, bandSeries, openSiteStore, renderTwinSvg, twinPlotOf } from '@twinfed/site-node';
import type { ForecastBand, Schedule } from '@twinfed/shared/twin/index';

export { RADIOMICS_HEADLINE } from '@twinfed/site-node';

/** A what-if file: named alternative schedules (see docs/twin.md). */
const ScheduleFile = z.object({
  horizonDays: z.number().positive().max(3650).default(180),
  alternatives: z.record(
    z.string(),
    z.object({
      radiotherapy: z
        .array(z.object({ dayStart: z.number(), fractions: z.number().int().min(1), doseGyPerFraction: z.number().positive(), fractionsPerWeek: z.number().int().min(1).max(7).optional() }))
        .optional(),
      systemic: z.array(z.object({ agentClass: z.string(), startDay: z.number(), stopDay: z.number().nullable().optional(), killRatePerDay: z.number().positive().optional() })).optional(),
    }),
  ),
});

/** What `--svg FILE` did: never claims a file it did not write. */
export interface PlotOutcome {
  file: string;
  written: boolean;
  /** Why no plot was written, or what the written plot lacks (observed points only). */
  note?: string;
}

export async function twinShow(dataDir: string, patientId: string, svgPath?: string) {
  const store = await openSiteStore(dataDir);
  try {
    const twin = new TwinService(store.db, store.audit);
    const obs = twin.observations(patientId);
    if (obs.days.length === 0 && twin.radiomics(patientId).length === 0) throw new Error(`TWF_E_NOT_FOUND: no measurements for patient ${patientId} at this site`);
    const summary = twin.summary(patientId);
    const schedule = twin.schedule(patientId);
    const scored = twin.scoreSheet(patientId);
    const calibration = twin.calibration();
    const pending = twin.pendingForecasts(patientId, calibration);
    let plot: PlotOutcome | null = null;
    if (svgPath) {
      const p = twinPlotOf(twin, patientId);
      if (!p) plot = { file: svgPath, written: false, note: `patient ${patientId} has no tumour measurement to plot (only radiomics); import a mask or a measurement CSV first` };
      else {
        writeFileSync(svgPath, renderTwinSvg(p));
        plot = {
          file: svgPath,
          written: true,
          ...(p.fitted
            ? {}
            : {
                note: `observed point${p.observed.length === 1 ? '' : 's'} only: the twin is not calibrated (${p.observed.length < 2 ? `${p.observed.length} measurement, needs at least 2 time points` : 'imported with --no-refit; run twinfed site import again without it'})`,
              }),
        };
      }
    }
    const radiomics = twin.radiomics(patientId);
    return {
      patientId,
      lesion: obs.lesion,
      radiomics,
      measurements: obs.days.map((d, i) => ({ day: d, volumeMm3: obs.volumesMm3[i] })),
      treatments: schedule ?? null,
      twin: summary,
      scoredForecasts: scored,
      pendingForecasts: pending,
      /** What the 90% band of the pending forecasts and the plot is (calibration set size and factor). */
      calibration,
      svg: plot?.written ? plot.file : null,
      plot,
    };
  } finally {
    store.close();
  }
}

export async function twinSimulate(dataDir: string, patientId: string, scheduleFile: string, svgPath?: string) {
  const spec = ScheduleFile.parse(JSON.parse(readFileSync(scheduleFile, 'utf8')));
  const alternatives: Record<string, Schedule> = {};
  for (const [name, s] of Object.entries(spec.alternatives)) {
    alternatives[name] = { radiotherapy: s.radiotherapy, systemic: s.systemic?.map((c) => ({ ...c, stopDay: c.stopDay ?? Infinity })) };
  }
  const store = await openSiteStore(dataDir);
  try {
    const twin = new TwinService(store.db, store.audit);
    const r = twin.simulate(patientId, alternatives, spec.horizonDays);
    store.audit.append({ actor: store.audit.ownerId, action: 'twin.simulated', detail: `${patientId}: ${Object.keys(alternatives).join(', ')}` });
    const obs = twin.observations(patientId);
    if (svgPath) {
      writeFileSync(
        svgPath,
        renderTwinSvg({
          title: `Patient ${patientId}: what-if schedules (${r.fit.modelName}), 90% band ${r.calibration.applied ? `calibrated (n = ${r.calibration.n}, factor ${r.calibration.factor.toFixed(2)})` : '(model band, not calibrated)'}`,
          observed: obs.days.map((d, i) => ({ day: d, volumeMm3: obs.volumesMm3[i], usedInFit: true })),
          fitted: bandSeries('current plan', r.current),
          whatIf: Object.entries(r.alternatives).map(([k, b]) => bandSeries(k, b)),
          treatments: [],
          nowDay: Math.max(...obs.days),
        }),
      );
    }
    const at = (b: ForecastBand, day: number) => {
      const found = b.days.findIndex((d) => d >= day);
      const i = found < 0 ? b.days.length - 1 : found;
      return i < 0 ? null : { day: b.days[i], medianMm3: b.median[i], lower90Mm3: b.lower[i], upper90Mm3: b.upper[i] };
    };
    const end = Math.max(...obs.days) + spec.horizonDays;
    return {
      patientId,
      model: r.fit.modelName,
      calibration: r.calibration,
      trajectories: { current: r.current, ...r.alternatives },
      atHorizon: Object.fromEntries([['current', at(r.current, end)], ...Object.entries(r.alternatives).map(([k, b]) => [k, at(b, end)])]) as Record<string, ReturnType<typeof at>>,
    };
  } finally {
    store.close();
  }
}
