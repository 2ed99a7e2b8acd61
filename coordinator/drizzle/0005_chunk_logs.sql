ALTER TABLE `update_chunks` ADD `log_file` text;--> statement-breakpoint
ALTER TABLE `update_chunks` ADD `log_offset` integer;--> statement-breakpoint
ALTER TABLE `update_chunks` ADD `log_length` integer;