import type { ForecastBand } from '@twinfed/shared/twin/index';
import type { TwinService } from './service.js';

/**
 * The twin's picture as data, computed once and drawn two ways: as SVG by `renderTwinSvg` (the CLI's
 * `--svg`) and as uPlot chart JSON by `twinChartData` (the site console's growth plot). Days count
 * from treatment start; volumes are mm³.
 */

/** A curve with an optional uncertainty band, in days and mm³. */
export interface PlotSeries {
  label: string;
  days: number[];
  median: number[];
  lower?: number[];
  upper?: number[];
}

export interface TwinPlot {
  title: string;
  observed: { day: number; volumeMm3: number; usedInFit: boolean }[];
  /** The calibrated model's forecast with its 90% band; absent while the twin is not calibrated (fewer than 2 measurements, or imported with --no-refit). */
  fitted?: PlotSeries;
  whatIf?: PlotSeries[];
  treatments: { label: string; startDay: number; stopDay: number }[];
  /** Vertical line at the last observation ("today" for the twin). */
  nowDay?: number;
  /** What the shaded band is: calibrated on the site's follow-ups (n, factor) or the model band (see TwinService.calibration). */
  bandNote?: string;
}

/** The line is the prediction at the estimate (smooth); the band is the Monte Carlo 90% interval. */
export const bandSeries = (label: string, b: ForecastBand): PlotSeries => ({ label, days: b.days, median: b.point, lower: b.lower, upper: b.upper });

/** Days after the last observation the growth plot forecasts. */
export const PLOT_HORIZON_DAYS = 120;

/**
 * The patient's growth plot: observed volumes of the primary lesion, the selected fit's forecast with
 * its 90% band, and the recorded treatments. Null when the patient has no measurement at all.
 */
export function twinPlotOf(twin: TwinService, patientId: string, horizonDays = PLOT_HORIZON_DAYS): TwinPlot | null {
  const obs = twin.observations(patientId);
  if (obs.days.length === 0) return null;
  const summary = twin.summary(patientId);
  const schedule = twin.schedule(patientId);
  const lastDay = Math.max(...obs.days);
  const sim = summary ? twin.simulate(patientId, {}, horizonDays) : null;
  const used = new Set(sim?.fit.days ?? []);
  return {
    title: summary
      ? `Patient ${patientId}: ${summary.model} (${summary.method === 'map' ? 'MAP with site prior' : 'least squares'}), 90% prediction band${sim ? (sim.calibration.applied ? `, calibrated (n = ${sim.calibration.n}, factor ${sim.calibration.factor.toFixed(2)})` : ' (model band, not calibrated)') : ''}`
      : `Patient ${patientId}: observed only (twin not calibrated: needs 2 measurements)`,
    observed: obs.days.map((d, i) => ({ day: d, volumeMm3: obs.volumesMm3[i], usedInFit: used.has(d) })),
    ...(sim ? { fitted: bandSeries('twin forecast', sim.current) } : {}),
    treatments: [
      ...(schedule?.systemic ?? []).map((c) => ({ label: c.agentClass, startDay: c.startDay, stopDay: Number.isFinite(c.stopDay) ? c.stopDay : lastDay + horizonDays })),
      ...(schedule?.radiotherapy ?? []).map((r) => ({ label: `RT ${r.fractions}x${r.doseGyPerFraction} Gy`, startDay: r.dayStart, stopDay: r.dayStart + Math.ceil(r.fractions / 5) * 7 })),
    ],
    nowDay: lastDay,
    ...(sim ? { bandNote: sim.calibration.note } : {}),
  };
}

/** What the site console's console.js draws with uPlot (see shared/web-assets/console.js). */
export interface ChartData {
  x: number[];
  xLabel: string;
  yLabel: string;
  series: {
    label: string;
    values: (number | null)[];
    points?: boolean;
    dash?: boolean;
    bandWith?: number;
  }[];
  /** Logarithmic y axis (tumour volumes span orders of magnitude under treatment); values <= 0 are left out. */
  yLog?: boolean;
}

const round1 = (v: number | undefined): number | null => (v === undefined || !Number.isFinite(v) ? null : Math.round(v * 10) / 10);

/**
 * The same plot as uPlot data: one x axis (the union of observed and forecast days), the observed
 * volumes as points, each curve as a line (what-if curves dashed), and, with `bands`, each curve's
 * 90% band as an upper and a lower series shaded between (`bandWith` = index of the lower one).
 */
export function twinChartData(p: TwinPlot, opts: { bands?: boolean } = {}): ChartData {
  const curves = [...(p.fitted ? [p.fitted] : []), ...(p.whatIf ?? [])];
  const key = (d: number) => Math.round(d * 1000) / 1000;
  const x = [...new Set([...p.observed.map((o) => key(o.day)), ...curves.flatMap((c) => c.days.map(key))])].sort((a, b) => a - b);
  const at = new Map(x.map((d, i) => [d, i]));
  const column = (days: number[], values: number[]) => {
    const out: (number | null)[] = new Array<number | null>(x.length).fill(null);
    days.forEach((d, i) => (out[at.get(key(d))!] = round1(values[i])));
    return out;
  };
  const series: ChartData['series'] = [
    {
      label: 'observed (mm³)',
      values: column(
        p.observed.map((o) => o.day),
        p.observed.map((o) => o.volumeMm3),
      ),
      points: true,
    },
  ];
  curves.forEach((c, i) => {
    series.push({ label: c.label, values: column(c.days, c.median), ...(i > 0 ? { dash: true } : {}) });
    if (opts.bands !== false && c.lower && c.upper) {
      const upper = series.length;
      series.push({ label: `${c.label}: 90% upper`, values: column(c.days, c.upper), bandWith: upper + 1 });
      series.push({ label: `${c.label}: 90% lower`, values: column(c.days, c.lower) });
    }
  });
  return { x, xLabel: 'days from treatment start', yLabel: 'tumour volume (mm³, log scale)', series, yLog: true };
}
