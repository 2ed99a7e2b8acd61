import { join, resolve } from 'node:path';
import type { SiteConsole, SiteNode } from '@twinfed/site-node';

/**
 * `twinfed site run` with its console, `twinfed site console` (the console alone, no connection),
 * and `twinfed site study show STUDY`. The console line is printed exactly as
 * `console: http://HOST:PORT/ (token: DATA_DIR/console.token)` (the demo parses it).
 */
export interface ConsoleFlags {
  console?: boolean;
  consolePort?: number;
  consoleHost?: string;
}

export function consoleLine(c: SiteConsole): string {
  return `console: ${c.url} (token: ${c.tokenSource})`;
}

/** Starts the console beside a running node; a port in use is reported and the node goes on without its console. */
export async function startConsoleWithNode(dataDir: string, node: SiteNode, o: ConsoleFlags, warn: (msg: string) => void): Promise<SiteConsole | null> {
  if (o.console === false) return null;
  const { startSiteConsole } = await import('@twinfed/site-node');
  try {
    return await startSiteConsole({
      dataDir: resolve(dataDir),
      node,
      ...(o.consoleHost !== undefined ? { host: o.consoleHost } : {}),
      ...(o.consolePort !== undefined ? { port: o.consolePort } : {}),
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    warn(
      `console: not started, port ${o.consolePort ?? node.config.console.port} is in use (another site on this machine?); the node runs without it. Use --console-port 0 for a free port, or set console.port in site.json`,
    );
    return null;
  }
}

/** `twinfed site console`: the console and /metrics on the site's data, without connecting; until SIGINT/SIGTERM. */
export async function serveConsoleAlone(dataDir: string, o: ConsoleFlags): Promise<void> {
  const { startSiteConsole } = await import('@twinfed/site-node');
  const c = await startSiteConsole({ dataDir: resolve(dataDir), ...(o.consoleHost !== undefined ? { host: o.consoleHost } : {}), ...(o.consolePort !== undefined ? { port: o.consolePort } : {}) });
  console.log(consoleLine(c));
  const stop = () => {
    c.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** `twinfed site study show STUDY`: the manifest in plain words (or its structured form with --json). */
export async function studyShow(dataDir: string, studyId: string): Promise<{ json: unknown; text: string }> {
  const { SITE_FILES, SiteNode, budgetView, formatManifestView, loadSiteConfig, manifestView, openSiteDb, pendingApprovals, rejectionOf } = await import('@twinfed/site-node');
  const dir = resolve(dataDir);
  const cfg = loadSiteConfig(dir);
  const db = openSiteDb(join(dir, SITE_FILES.db));
  try {
    const r = SiteNode.listStudies(db).find((x) => x.studyId === studyId);
    if (!r || !r.manifest)
      throw new Error(`TWF_E_UNKNOWN_STUDY_LOCAL: ${studyId} has not been announced to this site; start the site node so it receives the announcement (twinfed site studies lists those that were)`);
    const budget = budgetView(db, r.manifest, cfg.privacy);
    const view = await manifestView(r.manifest, r.manifestHash, cfg.siteId, { budget, policy: cfg.privacy });
    const awaiting = pendingApprovals(db).some((p) => p.studyId === studyId);
    const rejected = rejectionOf(db, studyId, r.manifestHash);
    const state = {
      status: r.status,
      approvedBy: r.approvedBy,
      awaitingApproval: awaiting,
      rejected,
    };
    const next = awaiting ? `\n  to approve      twinfed site approve ${studyId} --officer "NAME" --hash ${r.manifestHash} --data-dir ${dataDir}  (or the console's Approvals page)` : '';
    const text = `${formatManifestView(view)}\n  status          ${r.status}${r.approvedBy ? ` (approved by ${r.approvedBy})` : ''}${rejected ? ` (rejected by ${rejected.officer}: ${rejected.reason})` : ''}${next}`;
    return { json: { ...view, ...state }, text };
  } finally {
    db.$client.close();
  }
}
