// Minimal process runner: argv arrays only (never a shell), optional stdin.
import { spawn } from 'node:child_process';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    message: string,
    readonly result?: RunResult,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

/** Binaries can be overridden for unusual installs (e.g. OpenWrt paths). */
export const NFT = process.env.DNS_TPROXY_NFT || 'nft';
export const IP = process.env.DNS_TPROXY_IP || 'ip';

export function run(cmd: string, args: string[], input?: string, timeoutMs = 20000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'ENOENT' ? ` (is ${cmd === NFT ? 'nftables' : 'iproute2'} installed and in PATH?)` : '';
      reject(new CommandError(`${cmd}: ${err.message}${hint}`));
    });
    child.on('close', (code, signal) => {
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.on('error', () => {
      /* reported through exit code */
    });
    child.stdin.end(input ?? '');
  });
}

/** Run and throw a CommandError (with stderr) on non-zero exit. */
export async function runOk(cmd: string, args: string[], input?: string): Promise<RunResult> {
  const r = await run(cmd, args, input);
  if (r.code !== 0) {
    throw new CommandError(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`, r);
  }
  return r;
}
