import { eq } from 'drizzle-orm';
import { StudyManifestSchema } from '@twinfed/protocols';
import type { AuditLog } from '@twinfed/shared/audit/index';
import type { SiteDb } from '../db/index.js';
import { studies } from '../db/schema.js';
import { SiteError, WireError } from '../errors.js';

export interface PendingApproval {
  studyId: string;
  title: string;
  manifestHash: string;
  announcedAtMs: number;
}

/** Hashes the officer rejected, per study (audit `study.rejected`, whose digest is the manifest hash). */
function rejectedHashes(db: SiteDb): Set<string> {
  const rows = db.$client.prepare("select study_id as s, digest as d from audit_log where action = 'study.rejected'").all() as { s: string; d: string }[];
  return new Set(rows.map((r) => `${r.s}\u0000${r.d}`));
}

/**
 * Studies announced to this site whose current manifest waits for the privacy officer: status
 * pending (new, or changed since the last approval) and not rejected by the officer at this hash.
 * Shown as the console's badge, in `twinfed site doctor`, and at `site run` when one arrives.
 */
export function pendingApprovals(db: SiteDb): PendingApproval[] {
  const rejected = rejectedHashes(db);
  return db
    .select()
    .from(studies)
    .where(eq(studies.status, 'pending'))
    .all()
    .filter((st) => !rejected.has(`${st.studyId}\u0000${st.manifestHash}`))
    .map((st) => {
      const m = StudyManifestSchema.safeParse(JSON.parse(st.manifestJson));
      return { studyId: st.studyId, title: m.success ? m.data.title : '(unreadable manifest)', manifestHash: st.manifestHash, announcedAtMs: st.announcedAtMs };
    })
    .sort((a, b) => a.announcedAtMs - b.announcedAtMs);
}

/** Whether the officer rejected this study's current manifest (and who, why). */
export function rejectionOf(db: SiteDb, studyId: string, hash: string): { officer: string; reason: string; tsMs: number } | null {
  const r = db.$client.prepare("select actor, detail, ts_ms from audit_log where action = 'study.rejected' and study_id = ? and digest = ? order by id desc limit 1").get(studyId, hash) as
    { actor: string; detail: string | null; ts_ms: number } | undefined;
  return r ? { officer: r.actor, reason: r.detail ?? '', tsMs: r.ts_ms } : null;
}

/**
 * The officer rejects a pending manifest: recorded in the signed audit log, bound to the hash the
 * officer saw (a manifest changed since is refused with TWF_E_APPROVAL_HASH, as an approval is).
 * Nothing is sent: a pending study is never joined, and the node has already declined it to the
 * coordinator ("awaiting the privacy officer's approval"). An approved study is withdrawn instead
 * (SiteNode.withdraw). A later approval of the same hash still works: the officer may change their mind.
 */
export function rejectStudy(db: SiteDb, audit: AuditLog, studyId: string, officer: string, reason: string, expectedHash: string): { manifestHash: string } {
  const st = db.select().from(studies).where(eq(studies.studyId, studyId)).get();
  if (!st) throw new WireError('TWF_E_UNKNOWN_STUDY', `${studyId} has not been announced to this site`);
  if (expectedHash !== st.manifestHash) throw new SiteError('TWF_E_APPROVAL_HASH', `${studyId}: the hash given begins ${expectedHash.slice(0, 16)}; review the manifest again`);
  if (st.status !== 'pending')
    throw new WireError('TWF_E_STUDY_STATE', `${studyId} is ${st.status}, not awaiting approval${st.status === 'approved' || st.status === 'joined' ? ': withdraw the approval instead' : ''}`);
  audit.append({ actor: officer, action: 'study.rejected', studyId, digest: st.manifestHash, detail: reason });
  return { manifestHash: st.manifestHash };
}
