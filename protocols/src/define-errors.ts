/**
 * One shape for every error catalogue of Twinfed. Each package lists its codes once, in its
 * errors.ts, with `defineErrors({ TWF_E_...: { message, status? } })`:
 *  - `message` says what went wrong and what to do about it (users, logs and docs/errors.md show it);
 *  - `status` is the HTTP status, for codes that cross the wire (protocols/src/errors.ts).
 * Errors are thrown as subclasses of TwinfedError (`code`, `detail`), most made by `errorClass`.
 * A code lives in exactly one catalogue; another package that raises it imports it from there.
 * scripts/gen-error-docs.mjs writes docs/errors.md from the catalogues, and
 * test/src/error-catalogue.test.ts fails when a TWF_E_ code in the source is in none of them.
 */
export interface ErrorSpec {
  readonly message: string;
  readonly status?: number;
}

/** A catalogue as `defineErrors` returns it: frozen, keyed by code. */
export type ErrorCatalogue<T extends Record<string, ErrorSpec> = Record<string, ErrorSpec>> = { readonly [K in keyof T]: Readonly<T[K]> };
/** The codes of a catalogue. */
export type CodeOf<T> = keyof T & string;

/** Marks catalogues, so scripts/gen-error-docs.mjs can find them among a module's exports. */
export const ERROR_CATALOGUE: unique symbol = Symbol.for('twinfed.error-catalogue');
const CODE_RE = /^TWF_E_[A-Z0-9]+(?:_[A-Z0-9]+)*$/;

type OnlyCodes<T> = { [K in keyof T]: K extends `TWF_E_${string}` ? ErrorSpec : never };

export function defineErrors<const T extends Record<string, ErrorSpec>>(specs: T & OnlyCodes<T>): ErrorCatalogue<T> {
  for (const [code, spec] of Object.entries(specs as Record<string, ErrorSpec>)) {
    if (!CODE_RE.test(code)) throw new Error(`defineErrors: ${code} is not a TWF_E_ code (upper case, digits, single underscores)`);
    if (typeof spec.message !== 'string' || !spec.message.trim()) throw new Error(`defineErrors: ${code} has no message`);
    if (spec.status !== undefined && !(Number.isInteger(spec.status) && spec.status >= 400 && spec.status < 600))
      throw new Error(`defineErrors: ${code} has status ${spec.status}, not an HTTP error status`);
    Object.freeze(spec);
  }
  Object.defineProperty(specs, ERROR_CATALOGUE, { value: true, enumerable: false });
  return Object.freeze(specs);
}

export function isErrorCatalogue(x: unknown): x is ErrorCatalogue {
  return typeof x === 'object' && x !== null && (x as { [ERROR_CATALOGUE]?: boolean })[ERROR_CATALOGUE] === true;
}

/** Whether `code` is in `catalogue` (narrows it to the catalogue's codes). */
export function inCatalogue<T extends ErrorCatalogue>(catalogue: T, code: string): code is CodeOf<T> {
  return Object.prototype.hasOwnProperty.call(catalogue, code);
}

/** The base of every Twinfed error: a catalogued `code` and the `detail` of this occurrence. */
export class TwinfedError<C extends string = string> extends Error {
  readonly code: C;
  readonly detail: string;
  constructor(code: C, message: string, detail = '', options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.detail = detail;
  }
}

/** How an error class words its message; the default is `CODE: catalogue message (detail)`. */
export type ErrorFormat = (code: string, spec: ErrorSpec, detail: string) => string;
export const standardFormat: ErrorFormat = (code, spec, detail) => `${code}: ${spec.message}${detail ? ` (${detail})` : ''}`;

/**
 * An error class for a catalogue: `new E(code, detail?, options?)`, `name` set, message worded by
 * `format`. Extend it to get a named class: `export class SiteError extends errorClass('SiteError', SITE_ERRORS) {}`.
 */
export function errorClass<T extends ErrorCatalogue>(name: string, catalogue: T, format: ErrorFormat = standardFormat) {
  return class extends TwinfedError<CodeOf<T>> {
    constructor(code: CodeOf<T>, detail = '', options?: ErrorOptions) {
      super(code, format(code, catalogue[code], detail), detail, options);
      this.name = name;
    }
  };
}
