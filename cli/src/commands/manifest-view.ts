import type { StudyManifest } from '@twinfed/protocols';
import { formatManifestView, manifestView } from '@twinfed/site-node/manifest-view';

/**
 * A manifest in the terms a privacy officer approves it (the structured model and its wording live
 * in site-node/src/manifest-view.ts, shared with the site console). `privacyLines` replaces the
 * privacy block (formatBudget's lines, with the ledger's spend). The hash at the end is what
 * `twinfed site approve --hash` binds the approval to.
 */
export async function formatManifestForOfficer(m: StudyManifest, hash: string, selfId?: string, privacyLines?: string[]): Promise<string> {
  return formatManifestView(await manifestView(m, hash, selfId), privacyLines);
}
