ALTER TABLE `rounds` ADD `aggregate_digest` text;--> statement-breakpoint
ALTER TABLE `rounds` ADD `aggregate_bytes` integer;--> statement-breakpoint
ALTER TABLE `rounds` ADD `aggregate_pruned_at_ms` integer;