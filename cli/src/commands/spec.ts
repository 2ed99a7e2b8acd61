import { readFileSync } from 'node:fs';
import { canonicalJson, manifestHash, sha256Hex, StudyManifestSchema, StudySpecSchema, type StudyManifest } from '@twinfed/protocols';
import type { z } from 'zod';
import { CliError } from '../errors.js';

/** Line and column (both from 1) of a character offset in a text. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1]!.length + 1 };
}

/**
 * Reads a JSON file; a syntax error names the file and the line:column it is at (Node's message
 * gives only a character position, or none at the end of the input).
 */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError('TWF_E_SPEC', `${file}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    const msg = (e as Error).message;
    const m = /at position (\d+)/.exec(msg);
    const at = m ? Number(m[1]) : /end of JSON input|Unterminated/i.test(msg) ? text.length : null;
    const where = at === null ? '' : ((lc) => `:${lc.line}:${lc.column}`)(lineColumn(text, at));
    const what = msg.replace(/\s*(in JSON )?at position \d+.*$/, '').replace(/ \(line \d+ column \d+\)$/, '');
    throw new CliError('TWF_E_SPEC', `${file}${where}: JSON syntax error: ${what}`);
  }
}

/** Levenshtein distance (insert, delete, substitute: cost 1 each). */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The allowed key nearest to an unknown one, when it is near enough to be a typo (case ignored). */
export function didYouMean(key: string, allowed: readonly string[]): string | null {
  if (key.length > 200) return null; // no typo of a schema key; and edit distance is quadratic
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of allowed) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best !== null && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  element?: z.ZodType;
  options?: z.ZodType[];
  discriminator?: string;
  values?: unknown[];
}
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** Unwraps optional, default, nullable and pipe wrappers, and picks the option of a union the data selects. */
function resolve(schema: z.ZodType, data: unknown): z.ZodType {
  for (let i = 0; i < 16; i++) {
    const d = defOf(schema);
    if (d.innerType && ['optional', 'default', 'nullable', 'prefault', 'readonly', 'catch', 'nonoptional'].includes(d.type)) schema = d.innerType;
    else if (d.type === 'pipe' && d.in) schema = d.in;
    else if (d.type === 'union' && d.options) {
      const disc = d.discriminator;
      const value = disc && data && typeof data === 'object' ? (data as Record<string, unknown>)[disc] : undefined;
      const pick = d.options.find((o) => {
        const shape = defOf(resolve(o, undefined)).shape;
        const lit = disc && shape?.[disc] ? defOf(shape[disc]).values : undefined;
        return lit?.includes(value);
      });
      if (!pick) return schema;
      schema = pick;
    } else return schema;
  }
  return schema;
}

/** The keys allowed at a path of the data under a schema (empty where the path is not an object). */
export function allowedKeysAt(schema: z.ZodType, data: unknown, path: readonly PropertyKey[]): string[] {
  let s = resolve(schema, data);
  let x = data;
  for (const seg of path) {
    const d = defOf(s);
    x = x && typeof x === 'object' ? (x as Record<PropertyKey, unknown>)[seg] : undefined;
    if (d.type === 'object' && d.shape && typeof seg === 'string' && d.shape[seg]) s = resolve(d.shape[seg], x);
    else if (d.type === 'array' && d.element) s = resolve(d.element, x);
    else return [];
  }
  const d = defOf(s);
  return d.type === 'object' && d.shape ? Object.keys(d.shape) : [];
}

export interface SpecIssue {
  /** Dotted path in the file ('(top level)' for the top). */
  path: string;
  message: string;
  /** For an unknown key: the allowed key it is probably a typo of. */
  suggestion?: string;
}

/** The schema's issues of a spec as a lead reads them: an unknown key names the allowed keys there, and the nearest one. */
export function specIssues(spec: unknown, schema: z.ZodType = StudySpecSchema): SpecIssue[] {
  const p = schema.safeParse(spec);
  if (p.success) return [];
  const out: SpecIssue[] = [];
  for (const i of p.error.issues) {
    const path = i.path.map(String).join('.') || '(top level)';
    if (i.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(schema, spec, i.path);
      for (const key of i.keys) {
        const near = didYouMean(key, allowed);
        out.push({
          path: [...i.path.map(String), key].join('.'),
          message: `unknown key "${key}"${near ? `; did you mean "${near}"?` : ''}${allowed.length ? ` (allowed at ${path}: ${allowed.join(', ')})` : ''}`,
          ...(near ? { suggestion: near } : {}),
        });
      }
    } else if (i.code === 'invalid_type' && / received undefined$/.test(i.message)) out.push({ path, message: `missing: required (${i.expected})` });
    else out.push({ path, message: i.message });
  }
  return out;
}

export interface SpecCheck {
  file: string;
  ok: boolean;
  task: string | null;
  title: string | null;
  issues: SpecIssue[];
}

/** Checks a spec file: JSON syntax (file:line:column) and the schema, with "did you mean" for unknown keys. Throws only when the file cannot be read or parsed. */
export function checkSpecFile(file: string): { check: SpecCheck; spec: unknown } {
  const spec = readJsonFile(file);
  const issues = specIssues(spec);
  const o = spec && typeof spec === 'object' ? (spec as Record<string, unknown>) : {};
  return {
    spec,
    check: { file, ok: issues.length === 0, task: typeof o.task === 'string' ? o.task : null, title: typeof o.title === 'string' ? o.title : null, issues },
  };
}

export function formatSpecCheck(c: SpecCheck): string {
  return c.ok ? `OK  ${c.file}: a valid ${c.task} spec ("${c.title}")` : [`INVALID  ${c.file}: ${c.issues.length} problem(s)`, ...c.issues.map((i) => `  ${i.path}: ${i.message}`)].join('\n');
}

/** A spec file that must be valid (for create-study and spec hash): the spec, or TWF_E_SPEC naming every problem. */
export function loadValidSpec(file: string): unknown {
  const { check, spec } = checkSpecFile(file);
  if (!check.ok) throw new CliError('TWF_E_SPEC', `${file} is not a valid study spec:\n${check.issues.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
  return spec;
}

export interface SpecHash {
  file: string;
  kind: 'spec' | 'manifest';
  hash: string;
  /** What the hash covers, in words. */
  covers: string;
  /** For a manifest: the study, its version and its roster. */
  studyId?: string;
  manifestVersion?: number;
  participants?: string[];
  /** For a manifest downloaded with its hash (GET /api/studies/:id/manifest): whether the hash it came with is the one computed here. */
  statedHash?: string;
  statedHashMatches?: boolean;
}

/** SHA-256 of the canonical JSON of a spec as the schema parses it (defaults filled in). */
export function specHashOfFile(file: string): SpecHash {
  const parsed = StudySpecSchema.parse(loadValidSpec(file));
  return {
    file,
    kind: 'spec',
    hash: sha256Hex(canonicalJson(parsed)),
    covers:
      "the spec as written, with the schema's defaults filled in (canonical JSON, SHA-256). It is NOT the hash a privacy officer approves: the manifest adds the study id, creation time, encryption parameters, the roster with every site's keys and the key-dealer order; compare `twinfed spec hash --manifest` with `twinfed site approve --hash`",
  };
}

/**
 * The hash `twinfed site approve --hash` binds an approval to: SHA-256 of the canonical JSON of the
 * manifest as the schema parses it, the same function the coordinator and the site use. Accepts a
 * bare manifest or the answer of GET /api/studies/:id/manifest (`{ manifest, manifestHash, draft }`).
 */
export function manifestHashOfFile(file: string): SpecHash {
  const raw = readJsonFile(file);
  const wrapped = raw && typeof raw === 'object' && 'manifest' in raw ? (raw as { manifest: unknown; manifestHash?: unknown; draft?: unknown }) : null;
  if (wrapped?.draft === true)
    throw new CliError('TWF_E_SPEC', `${file} is a draft (no roster yet): officers approve the manifest written at start; run \`twinfed lead start\`, then download it again`);
  const p = StudyManifestSchema.safeParse(wrapped ? wrapped.manifest : raw);
  if (!p.success) {
    throw new CliError(
      'TWF_E_SPEC',
      `${file} is not a study manifest (from GET /api/studies/ID/manifest or \`twinfed site studies --show ID --json\`):\n${p.error.issues
        .slice(0, 8)
        .map((i) => `  ${i.path.map(String).join('.') || '(top level)'}: ${i.message}`)
        .join('\n')}`,
    );
  }
  const m: StudyManifest = p.data;
  const hash = manifestHash(m);
  const stated = typeof wrapped?.manifestHash === 'string' && wrapped.manifestHash ? wrapped.manifestHash : undefined;
  return {
    file,
    kind: 'manifest',
    hash,
    covers:
      'the whole manifest the privacy officer approves (spec, study id, encryption, roster with every site key, key-dealer order, manifest version): the hash `twinfed site approve --hash` checks',
    studyId: m.studyId,
    manifestVersion: m.manifestVersion,
    participants: m.participants.map((x) => x.siteId),
    ...(stated ? { statedHash: stated, statedHashMatches: stated === hash } : {}),
  };
}

export function formatSpecHash(h: SpecHash): string {
  return [
    h.hash,
    `  ${h.kind} ${h.file}${h.studyId ? ` (study ${h.studyId}, manifest version ${h.manifestVersion}, roster ${h.participants!.join(', ')})` : ''}`,
    `  covers: ${h.covers}`,
    ...(h.statedHash ? [h.statedHashMatches ? '  the hash the file came with matches' : `  WARNING: the file came with hash ${h.statedHash}, which is not the hash of its manifest`] : []),
  ].join('\n');
}
