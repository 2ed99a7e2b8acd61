import type { TwinPlot } from './plot.js';

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function niceTicks(lo: number, hi: number, n = 6): number[] {
  const span = hi - lo || 1;
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) ?? 10 * mag;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

/**
 * The twin's picture for a clinician: observed tumour volumes, the fitted
 * curve with its 90% prediction band, what-if schedules side by side, and
 * treatment periods shaded. Plain SVG, no dependencies.
 */
export function renderTwinSvg(p: TwinPlot, width = 860, height = 480): string {
  const m = { l: 80, r: 190, t: 40, b: 50 };
  const W = width - m.l - m.r;
  const H = height - m.t - m.b;
  const series = [...(p.fitted ? [p.fitted] : []), ...(p.whatIf ?? [])];
  const allDays = [...p.observed.map((o) => o.day), ...series.flatMap((s) => s.days), ...p.treatments.flatMap((t) => [t.startDay, t.stopDay])];
  // The scale follows the observations and central curves; wide upper bands are clipped, not allowed to flatten the picture.
  const allV = [...p.observed.map((o) => o.volumeMm3), ...series.flatMap((s) => s.median)].filter(Number.isFinite);
  const x0 = Math.min(...allDays);
  const x1 = Math.max(...allDays);
  const y1 = Math.max(...allV, 1) * 1.5;
  const X = (d: number) => m.l + ((d - x0) / (x1 - x0 || 1)) * W;
  const Y = (v: number) => m.t + H - (Math.max(0, Math.min(v, y1)) / y1) * H;
  const path = (days: number[], ys: number[]) => days.map((d, i) => `${i ? 'L' : 'M'}${X(d).toFixed(1)},${Y(ys[i]).toFixed(1)}`).join('');
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="${m.l}" y="22" font-size="15" font-weight="bold">${esc(p.title)}</text>`);
  for (const t of p.treatments) {
    parts.push(
      `<rect x="${X(t.startDay).toFixed(1)}" y="${m.t}" width="${Math.max(1, X(t.stopDay) - X(t.startDay)).toFixed(1)}" height="${H}" fill="#f2d7a6" opacity="0.45"><title>${esc(t.label)}</title></rect>`,
    );
    parts.push(`<text x="${(X(t.startDay) + 3).toFixed(1)}" y="${m.t + 14}" fill="#8a5a00">${esc(t.label)}</text>`);
  }
  for (const t of niceTicks(0, y1)) parts.push(`<line x1="${m.l}" x2="${m.l + W}" y1="${Y(t)}" y2="${Y(t)}" stroke="#eee"/><text x="${m.l - 6}" y="${Y(t) + 4}" text-anchor="end">${t}</text>`);
  for (const t of niceTicks(x0, x1))
    parts.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${m.t + H}" y2="${m.t + H + 5}" stroke="#333"/><text x="${X(t)}" y="${m.t + H + 18}" text-anchor="middle">${t}</text>`);
  parts.push(`<line x1="${m.l}" x2="${m.l + W}" y1="${m.t + H}" y2="${m.t + H}" stroke="#333"/><line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + H}" stroke="#333"/>`);
  parts.push(`<text x="${m.l + W / 2}" y="${height - 10}" text-anchor="middle">days from treatment start</text>`);
  parts.push(`<text transform="translate(18 ${m.t + H / 2}) rotate(-90)" text-anchor="middle">tumour volume (mm³)</text>`);
  series.forEach((s, i) => {
    const col = PALETTE[i % PALETTE.length];
    if (s.lower && s.upper) {
      const band = `${path(s.days, s.upper)}${s.days
        .slice()
        .reverse()
        .map((d, k) => `L${X(d).toFixed(1)},${Y(s.lower![s.days.length - 1 - k]).toFixed(1)}`)
        .join('')}Z`;
      parts.push(`<path d="${band}" fill="${col}" opacity="0.15"/>`);
    }
    parts.push(`<path d="${path(s.days, s.median)}" fill="none" stroke="${col}" stroke-width="2"${i ? ' stroke-dasharray="6 3"' : ''}/>`);
    parts.push(`<rect x="${m.l + W + 14}" y="${m.t + 8 + i * 20}" width="14" height="3" fill="${col}"/><text x="${m.l + W + 34}" y="${m.t + 13 + i * 20}">${esc(s.label)}</text>`);
  });
  if (p.nowDay !== undefined)
    parts.push(
      `<line x1="${X(p.nowDay)}" x2="${X(p.nowDay)}" y1="${m.t}" y2="${m.t + H}" stroke="#555" stroke-dasharray="2 3"/><text x="${X(p.nowDay) + 3}" y="${m.t + H - 4}" fill="#555">last scan</text>`,
    );
  for (const o of p.observed)
    parts.push(
      `<circle cx="${X(o.day).toFixed(1)}" cy="${Y(o.volumeMm3).toFixed(1)}" r="4" fill="${o.usedInFit ? 'black' : 'white'}" stroke="black"><title>day ${o.day}: ${o.volumeMm3.toFixed(0)} mm³</title></circle>`,
    );
  const ly = m.t + 8 + series.length * 20 + 10;
  parts.push(`<circle cx="${m.l + W + 21}" cy="${ly}" r="4" fill="black"/><text x="${m.l + W + 34}" y="${ly + 4}">observed</text>`);
  parts.push(`<rect x="${m.l + W + 14}" y="${ly + 14}" width="14" height="10" fill="#f2d7a6"/><text x="${m.l + W + 34}" y="${ly + 23}">treatment</text>`);
  parts.push(`<text x="${m.l + W + 14}" y="${ly + 44}" fill="#666">bands: 90% prediction</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
