import { CoordinatorLink } from '@twinfed/site-node/net';
import { normalizeTlsPin } from '@twinfed/shared/crypto/index';

/**
 * Minimal JSON client of the coordinator REST API for lead commands and the demo. A coordinator
 * that serves its own self-signed certificate is reached with its pin (TWINFED_TLS_PIN, as
 * `coordinator start` prints it), through the same pinned link as the sites; without a pin,
 * fetch and Node's certificate authorities.
 */
export class LeadClient {
  private readonly link: CoordinatorLink | null;

  constructor(
    readonly baseUrl: string,
    private readonly adminToken: string,
    tlsPin: string | undefined = process.env.TWINFED_TLS_PIN,
  ) {
    const pin = tlsPin ? normalizeTlsPin(tlsPin) : null;
    if (tlsPin && !pin) throw new Error(`TWINFED_TLS_PIN ${tlsPin}: expected sha256/ and the base64 SHA-256 of the certificate's public key`);
    this.link = pin && baseUrl.startsWith('https:') ? new CoordinatorLink({ coordinatorUrl: baseUrl, tlsPins: [pin] }) : null;
  }

  async call<T = unknown>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const authorization = `Bearer ${this.adminToken}`;
    let status: number;
    let json: unknown;
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
    if (status < 200 || status >= 300) {
      const e = json as { code?: string; message?: string; detail?: string };
      throw new Error(
        `${method} ${path} -> ${status} ${e?.code ?? ''} ${e?.message ?? (typeof json === 'string' ? json : JSON.stringify(json))}${e?.detail && !(e.message ?? '').includes(e.detail) ? ` (${e.detail})` : ''}`,
      );
    }
    return json as T;
  }
}
