import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

/**
 * Debian's chromium driven by playwright-core (Playwright's own browser download is unreachable
 * here). .ci/run installs chromium; elsewhere set TWINFED_CHROMIUM to another binary. Tests that
 * need it skip, saying why, when no binary is found.
 */
export function chromiumPath(): string | null {
  const candidates = [process.env.TWINFED_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  return candidates.find((p): p is string => !!p && existsSync(p)) ?? null;
}

export const NO_CHROMIUM = 'no chromium binary (apt-get install chromium, or set TWINFED_CHROMIUM): browser tests skipped';

export async function launchBrowser(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error(NO_CHROMIUM);
  return chromium.launch({ executablePath, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'] });
}

/** Where browser tests write their screenshots (out/browser/, ignored by git). */
export function screenshotDir(): string {
  const d = join(process.cwd(), 'out', 'browser');
  mkdirSync(d, { recursive: true });
  return d;
}

/** Signs in to a console through its sign-in page, as a user would. */
export async function signIn(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(baseUrl + '/');
  await page.getByLabel('Access token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState('domcontentloaded');
}
