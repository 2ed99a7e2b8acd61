import { z } from 'zod';

/**
 * Identifiers that cross the wire. Every id a peer sends may end up in a log line, an SQL
 * parameter or (study ids) a folder name at the site, so each has a fixed pattern: ASCII
 * letters, digits, '-' and '_', starting with a letter or digit, at most 64 characters.
 * No '.', '/', '\\' or spaces: an id can never name a parent folder or an absolute path.
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export const StudyIdSchema = z.string().regex(ID_PATTERN, 'study id: 1-64 of A-Z a-z 0-9 - _, starting with a letter or digit');
export const SiteIdSchema = z.string().regex(ID_PATTERN, 'site id: 1-64 of A-Z a-z 0-9 - _, starting with a letter or digit');
/** The coordinator's id (coordinator-<16 hex>) or a site id. */
export const PartyIdSchema = z.string().regex(ID_PATTERN, 'party id: 1-64 of A-Z a-z 0-9 - _');

/** True when `id` is safe to use as a path component and a wire id. */
export function isSafeId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}
