-- The audit log is append-only: the database refuses edits and deletions.
-- (Someone with file access can still drop these triggers; the hash chain and
-- signatures make such an edit detectable: twinfed audit verify.)
CREATE TRIGGER `audit_log_no_update` BEFORE UPDATE ON `audit_log` BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
--> statement-breakpoint
CREATE TRIGGER `audit_log_no_delete` BEFORE DELETE ON `audit_log` BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
