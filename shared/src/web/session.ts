import { randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Console sessions, in memory (a restart signs everyone out, which is the safe default). A session
 * id is 256 random bits in an HttpOnly, SameSite=Strict cookie; each session carries its own CSRF
 * token that every state-changing form must echo (OWASP CSRF cheat sheet: synchroniser token, plus
 * SameSite cookies and an Origin check as defence in depth, see `sameOrigin`).
 */
export interface ConsoleSession<Role extends string = string> {
  id: string;
  role: Role;
  csrf: string;
  createdMs: number;
  lastSeenMs: number;
}

export const SESSION_COOKIE = 'twinfed_console';

export class SessionStore<Role extends string = string> {
  private readonly sessions = new Map<string, ConsoleSession<Role>>();
  constructor(private readonly opts: { idleMs?: number; maxAgeMs?: number; maxSessions?: number; now?: () => number } = {}) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  create(role: Role): ConsoleSession<Role> {
    const max = this.opts.maxSessions ?? 1000;
    if (this.sessions.size >= max) {
      // Drop the least recently seen: a flood of sign-ins cannot grow memory without bound.
      const oldest = [...this.sessions.values()].sort((a, b) => a.lastSeenMs - b.lastSeenMs)[0];
      this.sessions.delete(oldest.id);
    }
    const t = this.now();
    const s: ConsoleSession<Role> = { id: randomBytes(32).toString('base64url'), role, csrf: randomBytes(24).toString('base64url'), createdMs: t, lastSeenMs: t };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The live session for a cookie value (idle and absolute timeouts applied), touching it. */
  get(id: string | undefined): ConsoleSession<Role> | null {
    if (!id) return null;
    const s = this.sessions.get(id);
    if (!s) return null;
    const t = this.now();
    if (t - s.lastSeenMs > (this.opts.idleMs ?? 30 * 60_000) || t - s.createdMs > (this.opts.maxAgeMs ?? 12 * 3600_000)) {
      this.sessions.delete(id);
      return null;
    }
    s.lastSeenMs = t;
    return s;
  }

  destroy(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** Constant-time comparison of a presented token with a configured one. */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The role whose token matches (each configured token compared in constant time), or null. */
export function roleForToken<Role extends string>(given: string, tokens: { role: Role; token: string | undefined }[]): Role | null {
  let found: Role | null = null;
  for (const t of tokens) if (t.token && sameSecret(given, t.token)) found ??= t.role;
  return found;
}

/** Cookie header → name/value map (RFC 6265 §5.2, values URI-decoded when possible). */
export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const k = part.slice(0, i).trim();
    const v = part.slice(i + 1).trim();
    if (!k || k in out) continue;
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      out[k] = v;
    }
  }
  return out;
}

/** Set-Cookie value for a session (Secure when served over TLS). */
export function sessionCookie(id: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}

/**
 * A state-changing request is accepted only when it echoes the session's CSRF token and, where the
 * browser sent Origin (every modern browser does for POST), the origin is this server's own.
 */
export function csrfOk(session: ConsoleSession, token: unknown, origin: string | undefined, host: string | undefined): boolean {
  if (typeof token !== 'string' || !sameSecret(token, session.csrf)) return false;
  return sameOrigin(origin, host);
}

/** True when Origin is absent or names the same host:port as the Host header. */
export function sameOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true;
  if (!host) return false;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/** A same-site relative path to return to after sign-in (never an absolute or protocol-relative URL). */
export function safeNext(next: unknown, fallback = '/'): string {
  return typeof next === 'string' && /^\/(?![/\\])[\w\-./?=&%]*$/.test(next) ? next : fallback;
}
