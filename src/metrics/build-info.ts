// The version this process runs, for `--version` and dns_tproxy_build_info.
import fs from 'node:fs';

let version: string | null = null;

/** package.json's version (dist/metrics/ → ../../package.json). */
export function packageVersion(): string {
  if (version === null) {
    try {
      version = String((JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown');
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

export function buildInfoLabels(): Record<string, string> {
  return { version: packageVersion(), node: process.version, platform: process.platform, arch: process.arch };
}
