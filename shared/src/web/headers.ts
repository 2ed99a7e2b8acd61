/**
 * Response headers of every console page and asset: a Content-Security-Policy that allows only this
 * origin's scripts and styles (no inline script, no framing, no plugins; OWASP secure headers), no
 * MIME sniffing, a referrer only to this origin (with `no-referrer` browsers send `Origin: null` on the console's own form posts, which the Origin check must refuse), and no caching of pages that may show patient or key data.
 */
export const CONSOLE_SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};
