CREATE TABLE `accumulators` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`idx` integer NOT NULL,
	`ct` blob NOT NULL,
	`contributions` integer NOT NULL,
	PRIMARY KEY(`study_id`, `round`, `idx`)
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
CREATE TABLE `enrolment_tokens` (
	`token_hash` text PRIMARY KEY NOT NULL,
	`site_name` text NOT NULL,
	`expires_at_ms` integer NOT NULL,
	`used_at_ms` integer,
	`site_id` text
);
--> statement-breakpoint
CREATE TABLE `meta` (
	`key` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `rounds` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`state` text NOT NULL,
	`opened_at_ms` integer NOT NULL,
	`deadline_at_ms` integer NOT NULL,
	`closed_at_ms` integer,
	`participants_json` text NOT NULL,
	`contributors_json` text,
	`total_samples` integer DEFAULT 0 NOT NULL,
	`length` integer,
	`ciphertexts` integer,
	`bytes_in` integer DEFAULT 0 NOT NULL,
	`aggregate_ms` real DEFAULT 0 NOT NULL,
	PRIMARY KEY(`study_id`, `round`)
);
--> statement-breakpoint
CREATE TABLE `site_metrics` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`mean_dice` real,
	`val_patients` integer NOT NULL,
	`train_loss` real,
	`train_ms` real,
	`encrypt_ms` real,
	`upload_bytes` integer,
	`reported_at_ms` integer NOT NULL,
	PRIMARY KEY(`study_id`, `round`, `site_id`)
);
--> statement-breakpoint
CREATE TABLE `sites` (
	`site_id` text PRIMARY KEY NOT NULL,
	`site_name` text NOT NULL,
	`ed25519_public_key` text NOT NULL,
	`x25519_public_key` text NOT NULL,
	`enrolled_at_ms` integer NOT NULL,
	`last_seq` integer DEFAULT 0 NOT NULL,
	`last_seen_at_ms` integer
);
--> statement-breakpoint
CREATE TABLE `studies` (
	`study_id` text PRIMARY KEY NOT NULL,
	`manifest_json` text NOT NULL,
	`manifest_hash` text NOT NULL,
	`state` text NOT NULL,
	`current_round` integer DEFAULT 0 NOT NULL,
	`key_dealer` text,
	`created_at_ms` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `study_sites` (
	`study_id` text NOT NULL,
	`site_id` text NOT NULL,
	`manifest_hash` text NOT NULL,
	`joined_at_ms` integer NOT NULL,
	`sealed_key` text,
	`key_delivered_at_ms` integer,
	PRIMARY KEY(`study_id`, `site_id`)
);
--> statement-breakpoint
CREATE TABLE `update_chunks` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`idx` integer NOT NULL,
	`ct` blob NOT NULL,
	`digest` text NOT NULL,
	PRIMARY KEY(`study_id`, `round`, `site_id`, `idx`)
);
--> statement-breakpoint
CREATE TABLE `updates` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`state` text NOT NULL,
	`count` integer NOT NULL,
	`n_samples` integer NOT NULL,
	`length` integer NOT NULL,
	`received` integer DEFAULT 0 NOT NULL,
	`bytes` integer DEFAULT 0 NOT NULL,
	`started_at_ms` integer NOT NULL,
	`completed_at_ms` integer,
	PRIMARY KEY(`study_id`, `round`, `site_id`)
);
