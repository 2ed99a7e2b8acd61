-- Protocol 2.0: key epochs with signed commitments, secure-aggregation round state, receipts and checkpoints.
-- Round work and study keys of protocol 1.x cannot continue under 2.0 and are not carried over;
-- studies announced under 1.x are marked legacy (their coordinator stops them; recreate them).
CREATE TABLE `audit_checkpoints` (
	`entry_id` integer PRIMARY KEY NOT NULL,
	`entry_hash` text NOT NULL,
	`coordinator_id` text NOT NULL,
	`ts_ms` integer NOT NULL,
	`signature` text NOT NULL,
	`received_at_ms` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `receipts` (
	`seq` integer PRIMARY KEY NOT NULL,
	`msg_type` text NOT NULL,
	`study_id` text,
	`round` integer,
	`digest` text NOT NULL,
	`entry_id` integer NOT NULL,
	`entry_hash` text NOT NULL,
	`coordinator_id` text NOT NULL,
	`signature` text NOT NULL,
	`received_at_ms` integer NOT NULL
);
--> statement-breakpoint
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_round_work` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`state` text NOT NULL,
	`key_epoch` integer NOT NULL,
	`base_version` integer NOT NULL,
	`participants_json` text NOT NULL,
	`threshold` integer NOT NULL,
	`delta` blob,
	`n_samples` integer NOT NULL,
	`length` integer NOT NULL,
	`train_loss` real,
	`train_ms` real,
	`s_sk` blob,
	`s_pk` blob,
	`b` blob,
	`setup_json` text,
	`key_set_json` text,
	`shares_json` text,
	`ciphertexts` blob,
	`encrypt_ms` real,
	`upload_bytes` integer,
	`uploaded_at_ms` integer,
	`signed_json` text,
	`revealed_json` text,
	PRIMARY KEY(`study_id`, `round`)
);
--> statement-breakpoint
DROP TABLE `round_work`;--> statement-breakpoint
ALTER TABLE `__new_round_work` RENAME TO `round_work`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE TABLE `__new_study_keys` (
	`study_id` text NOT NULL,
	`epoch` integer NOT NULL,
	`secret_key` blob NOT NULL,
	`dealer_site_id` text NOT NULL,
	`he_params_digest` text NOT NULL,
	`key_commitment` text NOT NULL,
	`manifest_hash` text NOT NULL,
	`received_at_ms` integer NOT NULL,
	PRIMARY KEY(`study_id`, `epoch`)
);
--> statement-breakpoint
DROP TABLE `study_keys`;--> statement-breakpoint
ALTER TABLE `__new_study_keys` RENAME TO `study_keys`;--> statement-breakpoint
ALTER TABLE `approvals` ADD `withdrawn_at_ms` integer;--> statement-breakpoint
ALTER TABLE `approvals` ADD `withdrawn_by` text;--> statement-breakpoint
UPDATE `studies` SET `status` = 'legacy' WHERE `status` != 'completed';