CREATE TABLE `dp_ledger` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`dataset_key` text NOT NULL,
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`level` text NOT NULL,
	`steps` integer NOT NULL,
	`sampling_rate` real NOT NULL,
	`noise_multiplier` real NOT NULL,
	`rdp` blob NOT NULL,
	`epsilon_study` real NOT NULL,
	`epsilon_dataset` real NOT NULL,
	`delta_dataset` real NOT NULL,
	`recorded_at_ms` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `dp_ledger_study_round` ON `dp_ledger` (`study_id`,`round`,`dataset_key`);--> statement-breakpoint
CREATE TABLE `strategy_state` (
	`study_id` text NOT NULL,
	`version` integer NOT NULL,
	`state` blob NOT NULL,
	`state_hash` text NOT NULL,
	`created_at_ms` integer NOT NULL,
	PRIMARY KEY(`study_id`, `version`)
);
