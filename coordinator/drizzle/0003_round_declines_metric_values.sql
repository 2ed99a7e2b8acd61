CREATE TABLE `round_declines` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`code` text NOT NULL,
	`detail` text NOT NULL,
	`at_ms` integer NOT NULL,
	PRIMARY KEY(`study_id`, `round`, `site_id`)
);
--> statement-breakpoint
CREATE TABLE `site_metric_values` (
	`study_id` text NOT NULL,
	`round` integer NOT NULL,
	`site_id` text NOT NULL,
	`name` text NOT NULL,
	`value` real,
	PRIMARY KEY(`study_id`, `round`, `site_id`, `name`)
);
--> statement-breakpoint
ALTER TABLE `studies` ADD `stop_reason` text;--> statement-breakpoint
ALTER TABLE `study_sites` ADD `dp_exhausted_at_ms` integer;--> statement-breakpoint
-- Dice reported before protocol 3.0 becomes the task metric 'meanDice' (hand-written).
INSERT INTO `site_metric_values` (`study_id`, `round`, `site_id`, `name`, `value`) SELECT `study_id`, `round`, `site_id`, 'meanDice', `mean_dice` FROM `site_metrics`;--> statement-breakpoint
ALTER TABLE `site_metrics` DROP COLUMN `mean_dice`;