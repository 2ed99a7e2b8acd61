CREATE TABLE `approvals` (
	`study_id` text NOT NULL,
	`manifest_hash` text NOT NULL,
	`officer` text NOT NULL,
	`approved_at_ms` integer NOT NULL,
	`note` text,
	PRIMARY KEY(`study_id`, `manifest_hash`)
);
--> statement-breakpoint
CREATE TABLE `audit_log` (
	`id` integer PRIMARY KEY NOT NULL,
	`ts_ms` integer NOT NULL,
	`actor` text NOT NULL,
	`action` text NOT NULL,
	`peer` text,
	`msg_type` text,
	`seq` integer,
	`study_id` text,
	`round` integer,
	`digest` text,
	`size_bytes` integer,
	`detail` text,
	`sig` text NOT NULL,
	`prev_hash` text NOT NULL,
	`hash` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `audit_owner` (
	`owner_id` text PRIMARY KEY NOT NULL,
	`ed25519_public_key` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `meta` (
	`key` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `models` (
	`study_id` text NOT NULL,
	`version` integer NOT NULL,
	`weights` blob NOT NULL,
	`digest` text NOT NULL,
	`created_at_ms` integer NOT NULL,
	`mean_dice` real,
	PRIMARY KEY(`study_id`, `version`)
);
--> statement-breakpoint
CREATE TABLE `patients` (
	`patient_id` text PRIMARY KEY NOT NULL,
	`split` text NOT NULL,
	`modality` text NOT NULL,
	`source_digest` text NOT NULL,
	`n_slices` integer NOT NULL,
	`size` integer NOT NULL,
	`images` blob NOT NULL,
	`masks` blob NOT NULL,
	`pixel_spacing_mm` real NOT NULL,
	`slice_thickness_mm` real NOT NULL,
	`imported_at_ms` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `round_work` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`ciphertexts` blob NOT NULL,
	`n_samples` integer NOT NULL,
	`length` integer NOT NULL,
	`train_loss` real,
	`train_ms` real,
	`encrypt_ms` real,
	`upload_bytes` integer NOT NULL,
	`uploaded_at_ms` integer,
	PRIMARY KEY(`study_id`, `round`)
);
--> statement-breakpoint
CREATE TABLE `studies` (
	`study_id` text PRIMARY KEY NOT NULL,
	`manifest_json` text NOT NULL,
	`manifest_hash` text NOT NULL,
	`status` text NOT NULL,
	`announced_at_ms` integer NOT NULL,
	`declined_hash` text
);
--> statement-breakpoint
CREATE TABLE `study_keys` (
	`study_id` text PRIMARY KEY NOT NULL,
	`secret_key` blob NOT NULL,
	`dealer_site_id` text NOT NULL,
	`he_params_digest` text NOT NULL,
	`received_at_ms` integer NOT NULL
);
