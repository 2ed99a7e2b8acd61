CREATE TABLE `radiomics_features` (
	`mask_id` integer NOT NULL,
	`patient_id` text NOT NULL,
	`lesion_id` integer NOT NULL,
	`settings` text NOT NULL,
	`tag` text NOT NULL,
	`value` real,
	PRIMARY KEY(`mask_id`, `settings`, `tag`)
);
