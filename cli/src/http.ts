import { CoordinatorLink } from '@twinfed/site-node/net';
import { normalizeTlsPin } from '@twinfed/shared/crypto/index';
import { CliError } from './errors.js';

/** Where lead and audit commands find the coordinator when neither --coordinator nor TWINFED_COORDINATOR_URL says. */
export const DEFAULT_COORDINATOR_URL = 'http://127.0.0.1:7400';
/** Environment variable of the coordinator URL (a --coordinator flag wins). */
export const COORDINATOR_URL_ENV = 'TWINFED_COORDINATOR_URL';

/**
 * The coordinator URL a command uses: the flag, else TWINFED_COORDINATOR_URL, else the default.
 * `--url` is the flag's older name, still accepted.
 */
export function coordinatorUrl(o: { coordinator?: string; url?: string }, env: NodeJS.ProcessEnv = process.env): string {
  return o.coordinator ?? o.url ?? (env[COORDINATOR_URL_ENV] || DEFAULT_COORDINATOR_URL);
}

/** Why a request never got an answer: the system error code (ECONNREFUSED, ENOTFOUND, ...), else the innermost message ("bad port"). */
function transportReason(e: unknown): string {
  let x: unknown = e;
  let message = (e as Error).message;
  for (let depth = 0; x && depth < 4; depth++) {
    const code = (x as { code?: unknown }).code;
    if (typeof code === 'string' && code) return code;
    if (typeof (x as Error).message === 'string' && (x as Error).message) message = (x as Error).message;
    const errors = (x as { errors?: unknown }).errors; // AggregateError of happy-eyeballs (IPv4 and IPv6)
    x = Array.isArray(errors) && errors.length ? errors[0] : (x as { cause?: unknown }).cause;
  }
  return message;
}

/**
 * Minimal JSON client of the coordinator REST API for lead and audit commands and the demo. A
 * coordinator that serves its own self-signed certificate is reached with its pin (TWINFED_TLS_PIN,
 * as `coordinator start` prints it), through the same pinned link as the sites; without a pin,
 * fetch and Node's certificate authorities. A coordinator that cannot be reached is reported with
 * the URL tried and what to check, not as "fetch failed".
 */
export class LeadClient {
  private readonly link: CoordinatorLink | null;

  constructor(
    readonly baseUrl: string,
    private readonly adminToken: string,
    tlsPin: string | undefined = process.env.TWINFED_TLS_PIN,
  ) {
    try {
      new URL(baseUrl);
    } catch {
      throw new CliError('TWF_E_COORDINATOR_UNREACHABLE', `${JSON.stringify(baseUrl)} is not a URL; set --coordinator or ${COORDINATOR_URL_ENV} to e.g. ${DEFAULT_COORDINATOR_URL}`);
    }
    const pin = tlsPin ? normalizeTlsPin(tlsPin) : null;
    if (tlsPin && !pin) throw new Error(`TWINFED_TLS_PIN ${tlsPin}: expected sha256/ and the base64 SHA-256 of the certificate's public key`);
    this.link = pin && baseUrl.startsWith('https:') ? new CoordinatorLink({ coordinatorUrl: baseUrl, tlsPins: [pin] }) : null;
  }

  async call<T = unknown>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const authorization = `Bearer ${this.adminToken}`;
    let status: number;
    let json: unknown;
    try {
      if (this.link) {
        ({ status, json } = await this.link.request(method, path, { ...(body !== undefined ? { body } : {}), headers: { authorization } }));
      } else {
        const res = await fetch(new URL(path, this.baseUrl), {
          method,
          headers: { authorization, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
        status = res.status;
        const text = await res.text();
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          json = text;
        }
      }
    } catch (e) {
      if ((e as { code?: unknown }).code && String((e as { code?: unknown }).code).startsWith('TWF_E_')) throw e; // a pin or proxy refusal says what it is
      throw new CliError('TWF_E_COORDINATOR_UNREACHABLE', `cannot reach the coordinator at ${this.baseUrl} (${transportReason(e)}): is it running? set --coordinator or ${COORDINATOR_URL_ENV}`);
    }
    if (status < 200 || status >= 300) {
      const e = json as { code?: string; message?: string; detail?: string };
      throw new Error(
        `${method} ${path} -> ${status} ${e?.code ?? ''} ${e?.message ?? (typeof json === 'string' ? json : JSON.stringify(json))}${e?.detail && !(e.message ?? '').includes(e.detail) ? ` (${e.detail})` : ''}`,
      );
    }
    return json as T;
  }
}
