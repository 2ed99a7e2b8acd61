-- Protocol 2.0: participant-bound keys (roster in the manifest), key epochs, secure aggregation.
-- Studies of protocol 1.x have no roster and cannot continue: running ones are stopped (recreate them).
CREATE TABLE `aggregate_refusals` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`code` text NOT NULL,
	`detail` text NOT NULL,
	`at_ms` integer NOT NULL,
	PRIMARY KEY(`study_id`, `round`, `site_id`)
);
--> statement-breakpoint
CREATE TABLE `key_epochs` (
	`study_id` text NOT NULL,
	`epoch` integer NOT NULL,
	`manifest_hash` text NOT NULL,
	`dealer` text NOT NULL,
	`recipients_json` text NOT NULL,
	`requested_at_ms` integer NOT NULL,
	`handout_json` text,
	`dealt_at_ms` integer,
	PRIMARY KEY(`study_id`, `epoch`)
);
--> statement-breakpoint
CREATE TABLE `mask_reveals` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`body_json` text NOT NULL,
	PRIMARY KEY(`study_id`, `round`, `site_id`)
);
--> statement-breakpoint
CREATE TABLE `mask_setups` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`s_pk` text NOT NULL,
	`b_commit` text NOT NULL,
	`signature` text NOT NULL,
	`boxes_json` text NOT NULL,
	`received_at_ms` integer NOT NULL,
	PRIMARY KEY(`study_id`, `round`, `site_id`)
);
--> statement-breakpoint
CREATE TABLE `mask_signatures` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`signature` text NOT NULL,
	PRIMARY KEY(`study_id`, `round`, `site_id`)
);
--> statement-breakpoint
CREATE TABLE `sealed_keys` (
	`study_id` text NOT NULL,
	`epoch` integer NOT NULL,
	`site_id` text NOT NULL,
	`sealed_key` text NOT NULL,
	`delivered_at_ms` integer,
	PRIMARY KEY(`study_id`, `epoch`, `site_id`)
);
--> statement-breakpoint
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_study_sites` (
	`study_id` text NOT NULL,
	`site_id` text NOT NULL,
	`manifest_hash` text NOT NULL,
	`joined_at_ms` integer,
	`train_samples` integer DEFAULT 0 NOT NULL,
	`val_patients` integer DEFAULT 0 NOT NULL,
	`excluded` text,
	`excluded_at_ms` integer,
	PRIMARY KEY(`study_id`, `site_id`)
);
--> statement-breakpoint
INSERT INTO `__new_study_sites`("study_id", "site_id", "manifest_hash", "joined_at_ms", "train_samples", "val_patients", "excluded", "excluded_at_ms") SELECT "study_id", "site_id", "manifest_hash", "joined_at_ms", 0, 0, NULL, NULL FROM `study_sites`;--> statement-breakpoint
DROP TABLE `study_sites`;--> statement-breakpoint
ALTER TABLE `__new_study_sites` RENAME TO `study_sites`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
ALTER TABLE `rounds` ADD `phase` text DEFAULT 'setup' NOT NULL;--> statement-breakpoint
ALTER TABLE `rounds` ADD `key_epoch` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `rounds` ADD `base_version` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `rounds` ADD `threshold` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `rounds` ADD `phase_deadline_at_ms` integer;--> statement-breakpoint
ALTER TABLE `rounds` ADD `key_set_json` text;--> statement-breakpoint
ALTER TABLE `rounds` ADD `survivors_json` text;--> statement-breakpoint
ALTER TABLE `rounds` ADD `revealers_json` text;--> statement-breakpoint
ALTER TABLE `rounds` ADD `fail_reason` text;--> statement-breakpoint
ALTER TABLE `rounds` DROP COLUMN `contributors_json`;--> statement-breakpoint
ALTER TABLE `sites` ADD `revoked_at_ms` integer;--> statement-breakpoint
ALTER TABLE `studies` ADD `key_epoch` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `studies` ADD `last_failed_at_ms` integer;--> statement-breakpoint
UPDATE `studies` SET `state` = 'stopped' WHERE `state` = 'running';