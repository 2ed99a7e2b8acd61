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
CREATE TABLE `forecasts` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`fit_id` integer NOT NULL,
	`patient_id` text NOT NULL,
	`day` real NOT NULL,
	`predicted_mm3` real NOT NULL,
	`lower90_mm3` real NOT NULL,
	`upper90_mm3` real NOT NULL,
	`observed_mm3` real,
	`abs_error_norm` real,
	`inside90` integer,
	`created_at_ms` integer NOT NULL,
	`scored_at_ms` integer
);
--> statement-breakpoint
CREATE TABLE `imaging_series` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`patient_id` text NOT NULL,
	`timepoint_id` integer NOT NULL,
	`modality` text NOT NULL,
	`sequence` text,
	`series_uid` text,
	`format` text NOT NULL,
	`dims_json` text NOT NULL,
	`spacing_mm_json` text NOT NULL,
	`orientation_json` text NOT NULL,
	`file_digest` text NOT NULL,
	`path` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `imaging_series_file_digest_unique` ON `imaging_series` (`file_digest`);--> statement-breakpoint
CREATE TABLE `imported_files` (
	`digest` text PRIMARY KEY NOT NULL,
	`path` text NOT NULL,
	`kind` text NOT NULL,
	`patient_id` text,
	`imported_at_ms` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `lesions` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`patient_id` text NOT NULL,
	`name` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `lesions_patient_name` ON `lesions` (`patient_id`,`name`);--> statement-breakpoint
CREATE TABLE `masks` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`series_id` integer NOT NULL,
	`lesion_id` integer NOT NULL,
	`origin` text NOT NULL,
	`voxels` integer NOT NULL,
	`volume_mm3` real NOT NULL,
	`longest_diameter_mm` real NOT NULL,
	`file_digest` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `measurements` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`patient_id` text NOT NULL,
	`lesion_id` integer NOT NULL,
	`timepoint_id` integer NOT NULL,
	`day` real NOT NULL,
	`volume_mm3` real NOT NULL,
	`longest_diameter_mm` real,
	`source` text NOT NULL,
	`source_digest` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `measurements_unique` ON `measurements` (`patient_id`,`lesion_id`,`day`,`source`);--> statement-breakpoint
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
CREATE TABLE `seg_slices` (
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
--> statement-breakpoint
CREATE TABLE `timepoints` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`patient_id` text NOT NULL,
	`day` real NOT NULL,
	`date` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `timepoints_patient_day` ON `timepoints` (`patient_id`,`day`);--> statement-breakpoint
CREATE TABLE `treatments` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`patient_id` text NOT NULL,
	`kind` text NOT NULL,
	`start_day` real NOT NULL,
	`stop_day` real,
	`fractions` integer,
	`dose_gy_per_fraction` real,
	`agent_class` text,
	`source_digest` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `twin_fits` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`patient_id` text NOT NULL,
	`model` text NOT NULL,
	`method` text NOT NULL,
	`params_json` text NOT NULL,
	`covariance_json` text,
	`sigma` real NOT NULL,
	`aic` real NOT NULL,
	`bic` real NOT NULL,
	`n_points` integer NOT NULL,
	`data_days_json` text NOT NULL,
	`selected` integer NOT NULL,
	`fitted_at_ms` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `twin_patients` (
	`patient_id` text PRIMARY KEY NOT NULL,
	`cohort` text,
	`created_at_ms` integer NOT NULL
);
