import { html, type SafeHtml } from './html.js';

export interface NavItem {
  href: string;
  label: string;
}

export interface PageOptions {
  /** Which console: the coordinator's (lead, auditor) or a site node's (officer, IT, clinician). */
  app: 'coordinator' | 'site';
  /** Shown in the title bar next to the page title: the coordinator id, or the site's name. */
  instance: string;
  title: string;
  body: SafeHtml;
  nav?: NavItem[];
  /** Current path, to mark the nav item (aria-current). */
  path?: string;
  /** The signed-in role shown in the header, with a sign-out button. */
  user?: { role: string };
  /** The session's CSRF token: every form must carry it (hidden field `csrf`, added by `csrfField`). */
  csrf?: string;
  /** Load uPlot (charts: any element with `data-chart`). */
  charts?: boolean;
}

/** The hidden form field every state-changing console form carries. */
export function csrfField(csrf: string): SafeHtml {
  return html`<input type="hidden" name="csrf" value="${csrf}" />`;
}

/**
 * One console page. No inline script or style (the Content-Security-Policy forbids them): behaviour
 * is in /assets/console.js, driven by data attributes (`data-live`, `data-chart`, `data-confirm`).
 */
export function page(o: PageOptions): string {
  const appName = o.app === 'coordinator' ? 'Twinfed coordinator' : 'Twinfed site node';
  const nav = o.nav ?? [];
  return (
    '<!doctype html>\n' +
    html`<html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${o.title} · ${appName} ${o.instance}</title>
        <link rel="stylesheet" href="/assets/console.css" />
        ${
          o.charts
            ? html`<link rel="stylesheet" href="/assets/uplot.css" />
                <script src="/assets/uplot.js" defer></script>`
            : null
        }
        <script src="/assets/console.js" defer></script>
        ${o.csrf ? html`<meta name="csrf" content="${o.csrf}" />` : null}
      </head>
      <body class="app-${o.app}">
        <a class="skip" href="#main">Skip to content</a>
        <header class="bar">
          <span class="brand">${appName}</span> <span class="instance">${o.instance}</span>
          ${
            nav.length
              ? html`<nav aria-label="Console sections">
                  <ul>
                    ${nav.map(
                      (n) =>
                        html`<li>
                          <a href="${n.href}" ${o.path !== undefined && (o.path === n.href || (n.href !== '/' && o.path.startsWith(n.href + '/'))) ? html` aria-current="page"` : null}>${n.label}</a>
                        </li>`,
                    )}
                  </ul>
                </nav>`
              : null
          }
          ${
            o.user
              ? html`<form class="signout" method="post" action="/console/sign-out">
                  <span class="role">signed in as ${o.user.role}</span>${o.csrf ? csrfField(o.csrf) : null}<button type="submit">Sign out</button>
                </form>`
              : null
          }
        </header>
        <main id="main" tabindex="-1">
          <h1>${o.title}</h1>
          ${o.body}
        </main>
      </body>
    </html> `.value
  );
}

/** Key-value rows (a definition list) for a record shown in human terms. */
export function facts(rows: [string, unknown][]): SafeHtml {
  return html`<dl class="facts">
    ${rows.map(
      ([k, v]) =>
        html`<dt>${k}</dt>
          <dd>${v}</dd>`,
    )}
  </dl>`;
}

/** A table from a header and rows; cells are escaped unless they are SafeHtml. */
export function table(caption: string, head: string[], rows: unknown[][], opts: { id?: string; empty?: string } = {}): SafeHtml {
  if (rows.length === 0) return html`<p class="empty">${opts.empty ?? `No ${caption.toLowerCase()}.`}</p>`;
  return html`<table${opts.id ? html` id="${opts.id}"` : null}><caption>${caption}</caption><thead><tr>${head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead><tbody>${rows.map(
    (r) =>
      html`<tr>
        ${r.map((c) => html`<td>${c}</td>`)}
      </tr>`,
  )}</tbody></table>`;
}

/** A message box: ok (green), error (red, role=alert) or note. */
export function notice(kind: 'ok' | 'error' | 'note', text: unknown): SafeHtml {
  return html`<div class="notice ${kind}" role="${kind === 'error' ? 'alert' : 'status'}">${text}</div>`;
}

/** The sign-in page served with 200 to anyone without a session (never a JSON 401). */
export function signInPage(o: { app: 'coordinator' | 'site'; instance: string; roles: string; error?: string; next?: string }): string {
  return page({
    app: o.app,
    instance: o.instance,
    title: 'Sign in',
    body: html`${o.error ? notice('error', o.error) : null}
      <form class="signin" method="post" action="/console/sign-in">
        <p>${o.roles}</p>
        <label for="token">Access token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required autofocus />
        ${o.next ? html`<input type="hidden" name="next" value="${o.next}" />` : null}
        <button type="submit">Sign in</button>
      </form>`,
  });
}
