// Headless Debian Chromium through playwright-core, for the console's browser tests: a fresh profile
// per launch, and every CSP violation, console error and uncaught page error collected per page so a
// test can assert there were none.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

export const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

/** Why a browser test cannot run here, or null. */
export function browserUnavailable() {
  if (!fs.existsSync(CHROMIUM)) return `${CHROMIUM} missing (Debian package chromium, see .ci/run)`;
  try { execFileSync(CHROMIUM, ['--version'], { stdio: 'ignore', timeout: 20_000 }); } catch (e) { return `${CHROMIUM} does not run: ${e.message}`; }
  return null;
}

/**
 * A persistent context on a fresh user data dir (removed at teardown), optionally inside a network
 * namespace. `problems` collects, for all
 * pages of the context: CSP violations (event and console report), console errors and page errors.
 */
export async function openBrowser(t, { viewport = { width: 1280, height: 900 }, colorScheme = 'light', ignore = [], netns, onlyHost } = {}) {
  const { chromium } = await import('playwright-core');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'console-chromium-'));
  let executablePath = CHROMIUM;
  if (netns) {
    // The browser as a LAN client: Chromium itself runs inside the lab's client namespace (playwright
    // talks to it over inherited pipe fds, which `ip netns exec` keeps).
    executablePath = path.join(dir, 'chromium-in-netns.sh');
    fs.writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec '${netns}' ${CHROMIUM} "$@"\n`, { mode: 0o755 });
  }
  const profile = path.join(dir, 'profile');
  // `onlyHost`: Chromium resolves no name at all (its own background lookups would otherwise go
  // through the lab's DNS interception and into the query log under test).
  const args = onlyHost ? [...ARGS, `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${onlyHost}`] : ARGS;
  const ctx = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args, viewport, colorScheme });
  const problems = [];
  t.teardown(async () => { await ctx.close().catch(() => {}); fs.rmSync(dir, { recursive: true, force: true }); });
  // Runs before any page script; a CSP violation event bubbles to document.
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  const watch = (page) => {
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const text = m.text();
      if (ignore.some((re) => re.test(text))) return;
      problems.push(`console: ${text}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  };
  ctx.on('page', watch);
  const page = ctx.pages()[0] ?? await ctx.newPage();
  watch(page);
  return { ctx, page, problems };
}
