ALTER TABLE "update_chunks" ADD COLUMN "log_file" text;--> statement-breakpoint
ALTER TABLE "update_chunks" ADD COLUMN "log_offset" bigint;--> statement-breakpoint
ALTER TABLE "update_chunks" ADD COLUMN "log_length" bigint;