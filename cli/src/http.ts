/** Minimal JSON client of the coordinator REST API for lead commands and the demo. */
export class LeadClient {
  constructor(readonly baseUrl: string, private readonly adminToken: string) {}

  async call<T = unknown>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const res = await fetch(new URL(path, this.baseUrl), {
      method,
      headers: { authorization: `Bearer ${this.adminToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    if (!res.ok) {
      const e = json as { code?: string; message?: string; detail?: string };
      throw new Error(`${method} ${path} -> ${res.status} ${e?.code ?? ''} ${e?.message ?? text}${e?.detail && !(e.message ?? '').includes(e.detail) ? ` (${e.detail})` : ''}`);
    }
    return json as T;
  }
}
