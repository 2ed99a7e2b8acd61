/**
 * Server-rendered HTML for the consoles: a tagged template that escapes every interpolated value
 * (OWASP XSS prevention rule 1: HTML-escape untrusted data in element content and quoted
 * attributes). Only a `SafeHtml` (the result of `html` or an explicit `raw`) is inserted as is, so a
 * site name or an audit detail holding `<script>` renders as text.
 */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

/** Trusted markup inserted without escaping: only for strings this program wrote itself, never for data. */
export function raw(s: string): SafeHtml {
  return new SafeHtml(s);
}

function render(v: unknown): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  if (typeof v === 'string') return escapeHtml(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return escapeHtml(String(v));
  return escapeHtml(JSON.stringify(v));
}

/**
 * `html\`<td>${name}</td>\``: strings, numbers and objects are escaped; arrays are rendered item by
 * item (a list of `html` rows); null, undefined and false render as nothing (conditional parts).
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new SafeHtml(out);
}

/** JSON for a `data-*` attribute (escaped by `html` when interpolated into a quoted attribute). */
export function dataJson(v: unknown): string {
  return JSON.stringify(v);
}
