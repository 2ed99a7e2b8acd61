import { HandshakeChallengeResponse } from '@twinfed/protocols';
import type { SiteConfig } from './config.js';

/**
 * The site's outbound HTTP calls to the coordinator (it never listens). Every call a site makes
 * goes through here, so transport settings (TLS pinning, proxies) apply to all of them.
 */
export async function postJson(config: Pick<SiteConfig, 'coordinatorUrl'>, path: string, body: unknown, timeoutMs = 15_000): Promise<{ status: number; json: unknown }> {
  const res = await fetch(new URL(path, config.coordinatorUrl), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

/** A fresh single-use handshake nonce (POST /api/handshake) and the coordinator's last seen sequence number of this site. */
export async function fetchHandshakeChallenge(config: Pick<SiteConfig, 'coordinatorUrl' | 'siteId'>) {
  const r = await postJson(config, '/api/handshake', { siteId: config.siteId });
  if (r.status !== 200) {
    const j = r.json as { code?: string; detail?: string } | null;
    throw new Error(`handshake challenge refused: ${r.status} ${j?.code ?? ''} ${j?.detail ?? ''}`.trim());
  }
  return HandshakeChallengeResponse.parse(r.json);
}
