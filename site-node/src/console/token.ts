import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SiteError } from '../errors.js';

export const CONSOLE_TOKEN_FILE = 'console.token';
export const CONSOLE_TOKEN_ENV = 'TWINFED_SITE_CONSOLE_TOKEN';

/**
 * The site console's own access token (not the coordinator's, not an enrolment token): from
 * TWINFED_SITE_CONSOLE_TOKEN, or DATA_DIR/console.token, created on first start with 256 random
 * bits (base64url) and mode 0600 so only the site's user can read it. A file others can read is
 * refused rather than used: anyone on the machine could sign in with it.
 */
export function consoleToken(dataDir: string, env: NodeJS.ProcessEnv = process.env): { token: string; source: 'env' | 'file'; path: string | null } {
  const fromEnv = env[CONSOLE_TOKEN_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (fromEnv.length < 16) throw new SiteError('TWF_E_CONSOLE_TOKEN', `${CONSOLE_TOKEN_ENV} holds ${fromEnv.length} characters`);
    return { token: fromEnv, source: 'env', path: null };
  }
  const path = join(dataDir, CONSOLE_TOKEN_FILE);
  if (!existsSync(path)) {
    const token = randomBytes(32).toString('base64url');
    try {
      writeFileSync(path, token + '\n', { mode: 0o600, flag: 'wx' });
      return { token, source: 'file', path };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; // another process created it first: read theirs
    }
  }
  const mode = statSync(path).mode & 0o777;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) throw new SiteError('TWF_E_CONSOLE_TOKEN', `${path} has mode ${mode.toString(8)}; run chmod 600 ${path}`);
  const token = readFileSync(path, 'utf8').trim();
  if (token.length < 16) throw new SiteError('TWF_E_CONSOLE_TOKEN', `${path} holds ${token.length} characters`);
  return { token, source: 'file', path };
}
