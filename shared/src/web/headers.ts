/**
 * Response headers of every console page and asset: a Content-Security-Policy that allows only this
 * origin's scripts and styles (no inline script, no framing, no plugins; OWASP secure headers), no
 * MIME sniffing, no referrer, and no caching of pages that may show patient or key data.
 */
export const CONSOLE_SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};
