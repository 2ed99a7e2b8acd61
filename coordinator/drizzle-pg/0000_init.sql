CREATE TABLE "accumulators" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"idx" bigint NOT NULL,
	"ct" "bytea" NOT NULL,
	"contributions" bigint NOT NULL,
	CONSTRAINT "accumulators_study_id_round_idx_pk" PRIMARY KEY("study_id","round","idx")
);
--> statement-breakpoint
CREATE TABLE "aggregate_refusals" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"code" text NOT NULL,
	"detail" text NOT NULL,
	"at_ms" bigint NOT NULL,
	CONSTRAINT "aggregate_refusals_study_id_round_site_id_pk" PRIMARY KEY("study_id","round","site_id")
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" bigint PRIMARY KEY NOT NULL,
	"ts_ms" bigint NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"peer" text,
	"msg_type" text,
	"seq" bigint,
	"study_id" text,
	"round" bigint,
	"digest" text,
	"size_bytes" bigint,
	"detail" text,
	"sig" text NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "audit_owner" (
	"owner_id" text PRIMARY KEY NOT NULL,
	"ed25519_public_key" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrolment_tokens" (
	"token_hash" text PRIMARY KEY NOT NULL,
	"site_name" text NOT NULL,
	"expires_at_ms" bigint NOT NULL,
	"used_at_ms" bigint,
	"site_id" text
);
--> statement-breakpoint
CREATE TABLE "key_epochs" (
	"study_id" text NOT NULL,
	"epoch" bigint NOT NULL,
	"manifest_hash" text NOT NULL,
	"dealer" text NOT NULL,
	"recipients_json" text NOT NULL,
	"requested_at_ms" bigint NOT NULL,
	"handout_json" text,
	"dealt_at_ms" bigint,
	CONSTRAINT "key_epochs_study_id_epoch_pk" PRIMARY KEY("study_id","epoch")
);
--> statement-breakpoint
CREATE TABLE "mask_reveals" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"body_json" text NOT NULL,
	CONSTRAINT "mask_reveals_study_id_round_site_id_pk" PRIMARY KEY("study_id","round","site_id")
);
--> statement-breakpoint
CREATE TABLE "mask_setups" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"s_pk" text NOT NULL,
	"b_commit" text NOT NULL,
	"signature" text NOT NULL,
	"boxes_json" text NOT NULL,
	"received_at_ms" bigint NOT NULL,
	CONSTRAINT "mask_setups_study_id_round_site_id_pk" PRIMARY KEY("study_id","round","site_id")
);
--> statement-breakpoint
CREATE TABLE "mask_signatures" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"signature" text NOT NULL,
	CONSTRAINT "mask_signatures_study_id_round_site_id_pk" PRIMARY KEY("study_id","round","site_id")
);
--> statement-breakpoint
CREATE TABLE "meta" (
	"key" text PRIMARY KEY NOT NULL,
	"value" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "round_declines" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"code" text NOT NULL,
	"detail" text NOT NULL,
	"at_ms" bigint NOT NULL,
	CONSTRAINT "round_declines_study_id_round_site_id_pk" PRIMARY KEY("study_id","round","site_id")
);
--> statement-breakpoint
CREATE TABLE "rounds" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"state" text NOT NULL,
	"phase" text DEFAULT 'setup' NOT NULL,
	"key_epoch" bigint DEFAULT 0 NOT NULL,
	"base_version" bigint DEFAULT 0 NOT NULL,
	"threshold" bigint DEFAULT 0 NOT NULL,
	"opened_at_ms" bigint NOT NULL,
	"deadline_at_ms" bigint NOT NULL,
	"phase_deadline_at_ms" bigint,
	"closed_at_ms" bigint,
	"participants_json" text NOT NULL,
	"key_set_json" text,
	"survivors_json" text,
	"revealers_json" text,
	"fail_reason" text,
	"total_samples" bigint DEFAULT 0 NOT NULL,
	"length" bigint,
	"ciphertexts" bigint,
	"bytes_in" bigint DEFAULT 0 NOT NULL,
	"aggregate_ms" double precision DEFAULT 0 NOT NULL,
	"aggregate_digest" text,
	"aggregate_bytes" bigint,
	"aggregate_pruned_at_ms" bigint,
	CONSTRAINT "rounds_study_id_round_pk" PRIMARY KEY("study_id","round")
);
--> statement-breakpoint
CREATE TABLE "sealed_keys" (
	"study_id" text NOT NULL,
	"epoch" bigint NOT NULL,
	"site_id" text NOT NULL,
	"sealed_key" text NOT NULL,
	"delivered_at_ms" bigint,
	CONSTRAINT "sealed_keys_study_id_epoch_site_id_pk" PRIMARY KEY("study_id","epoch","site_id")
);
--> statement-breakpoint
CREATE TABLE "site_metric_values" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"name" text NOT NULL,
	"value" double precision,
	CONSTRAINT "site_metric_values_study_id_round_site_id_name_pk" PRIMARY KEY("study_id","round","site_id","name")
);
--> statement-breakpoint
CREATE TABLE "site_metrics" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"val_patients" bigint NOT NULL,
	"train_loss" double precision,
	"train_ms" double precision,
	"encrypt_ms" double precision,
	"upload_bytes" bigint,
	"reported_at_ms" bigint NOT NULL,
	CONSTRAINT "site_metrics_study_id_round_site_id_pk" PRIMARY KEY("study_id","round","site_id")
);
--> statement-breakpoint
CREATE TABLE "sites" (
	"site_id" text PRIMARY KEY NOT NULL,
	"site_name" text NOT NULL,
	"ed25519_public_key" text NOT NULL,
	"x25519_public_key" text NOT NULL,
	"enrolled_at_ms" bigint NOT NULL,
	"last_seq" bigint DEFAULT 0 NOT NULL,
	"last_seen_at_ms" bigint,
	"revoked_at_ms" bigint
);
--> statement-breakpoint
CREATE TABLE "studies" (
	"study_id" text PRIMARY KEY NOT NULL,
	"manifest_json" text NOT NULL,
	"manifest_hash" text NOT NULL,
	"state" text NOT NULL,
	"stop_reason" text,
	"current_round" bigint DEFAULT 0 NOT NULL,
	"key_epoch" bigint DEFAULT 0 NOT NULL,
	"key_dealer" text,
	"created_at_ms" bigint NOT NULL,
	"last_failed_at_ms" bigint
);
--> statement-breakpoint
CREATE TABLE "study_sites" (
	"study_id" text NOT NULL,
	"site_id" text NOT NULL,
	"manifest_hash" text NOT NULL,
	"joined_at_ms" bigint,
	"train_samples" bigint DEFAULT 0 NOT NULL,
	"val_patients" bigint DEFAULT 0 NOT NULL,
	"excluded" text,
	"excluded_at_ms" bigint,
	"dp_exhausted_at_ms" bigint,
	CONSTRAINT "study_sites_study_id_site_id_pk" PRIMARY KEY("study_id","site_id")
);
--> statement-breakpoint
CREATE TABLE "update_chunks" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"idx" bigint NOT NULL,
	"ct" "bytea" NOT NULL,
	"digest" text NOT NULL,
	CONSTRAINT "update_chunks_study_id_round_site_id_idx_pk" PRIMARY KEY("study_id","round","site_id","idx")
);
--> statement-breakpoint
CREATE TABLE "updates" (
	"study_id" text NOT NULL,
	"round" bigint NOT NULL,
	"site_id" text NOT NULL,
	"state" text NOT NULL,
	"count" bigint NOT NULL,
	"n_samples" bigint NOT NULL,
	"length" bigint NOT NULL,
	"received" bigint DEFAULT 0 NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	"started_at_ms" bigint NOT NULL,
	"completed_at_ms" bigint,
	CONSTRAINT "updates_study_id_round_site_id_pk" PRIMARY KEY("study_id","round","site_id")
);
