#!/usr/bin/env node
// dns-tproxy command line: run, check, network up|down|show, cache flush.
import { parseArgs } from 'node:util';
import { applyConfiguredSemiSpace } from './heap-tuning.js';
import { loadConfigIsolated } from './config/load-isolated.js';
import { DnsServer, defaultLog } from './server.js';
import { ConfigError, DnsTproxyError } from './errors.js';
import type { Config } from './config/types.js';
import { isWorker, runPrimary, runWorker, workerCount } from './workers.js';

/** Exit codes; the same table is printed by `dns-tproxy --help`. */
export const EXIT = { OK: 0, FAILED: 1, USAGE_OR_CONFIG: 2, UNREACHABLE: 3, PERMISSION: 4 } as const;

const EXIT_TEXT = `exit codes:
  0  success
  1  the operation failed (the message says why)
  2  bad command line, or the config is missing or invalid (file:line and key are named)
  3  the running server's admin endpoint (metrics.listen) cannot be reached: is dns-tproxy running?
  4  permission denied (binding port 53, nft and ip rules need root or CAP_NET_ADMIN/CAP_NET_BIND_SERVICE)
`;

interface Command { usage: string; summary: string; help: string }
const COMMANDS: Record<string, Command> = {
  run: {
    usage: 'dns-tproxy run --config FILE [--manage-network]',
    summary: 'serve (SIGHUP reloads, SIGTERM drains)',
    help: `Starts the listeners, upstreams and metrics endpoint from FILE and serves until SIGTERM/SIGINT,
which drain in-flight queries first. SIGHUP re-reads FILE; a config that fails \`check\` is refused and
the running one stays (dns_tproxy_config_reload_failures_total counts it).
  --manage-network   also install the nftables TPROXY rules and policy routing (as \`network up\`),
                     and remove them on exit`,
  },
  check: {
    usage: 'dns-tproxy check --config FILE',
    summary: 'validate the config; every problem is named with file:line and key',
    help: 'Runs exactly the validation `run` and SIGHUP run, without starting anything. Exit 0 when valid, 2 otherwise.',
  },
  network: {
    usage: 'dns-tproxy network up|down|show|rules --config FILE',
    summary: 'install / remove / inspect / print the nft rules and policy routing',
    help: `  up     install (idempotent)        down   remove everything dns-tproxy installed
  show   report what is in effect     rules  print the nft script \`up\` would load`,
  },
  cache: {
    usage: 'dns-tproxy cache flush [NAME] --config FILE',
    summary: 'flush the running server\'s cache (all, or NAME and below)',
    help: `Asks the running server through its admin endpoint (metrics.listen in FILE); sends
metrics.adminToken as a bearer token when set. Exit 3 when no server answers there.`,
  },
  passwd: {
    usage: 'dns-tproxy passwd',
    summary: 'read a password on stdin, print its hash for console.users',
    help: 'echo -n SECRET | dns-tproxy passwd',
  },
  help: { usage: 'dns-tproxy help [COMMAND]', summary: 'this text, or one command\'s', help: '' },
};

function usage(): string {
  const w = Math.max(...Object.values(COMMANDS).map((c) => c.usage.length));
  return `usage:\n${Object.values(COMMANDS).map((c) => `  ${c.usage.padEnd(w)}  ${c.summary}`).join('\n')}
  dns-tproxy --version

Run \`dns-tproxy help COMMAND\` or \`dns-tproxy COMMAND --help\` for one command.
${EXIT_TEXT}`;
}

function commandHelp(name: string): string {
  const c = COMMANDS[name];
  return `usage: ${c.usage}\n${c.summary}\n${c.help ? `\n${c.help}\n` : ''}\n${EXIT_TEXT}`;
}

/** A command-line mistake: one line, then where to look. */
function usageError(msg: string, cmd?: string): number {
  process.stderr.write(`dns-tproxy: ${msg}\n${cmd && COMMANDS[cmd] ? `usage: ${COMMANDS[cmd].usage}\n` : 'run `dns-tproxy --help` for usage\n'}`);
  return EXIT.USAGE_OR_CONFIG;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: {
        config: { type: 'string', short: 'c' }, 'manage-network': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    });
  } catch (e) {
    return usageError((e as Error).message.split('\n')[0], argv.find((a) => !a.startsWith('-')));
  }
  const { values, positionals } = parsed;
  const [cmd, sub, arg] = positionals;
  if (values.version || cmd === 'version') {
    process.stdout.write(`dns-tproxy ${(await import('./metrics/build-info.js')).packageVersion()} (node ${process.version})\n`);
    return EXIT.OK;
  }
  if (cmd === 'help') {
    if (sub === undefined) { process.stdout.write(usage()); return EXIT.OK; }
    if (!COMMANDS[sub]) return usageError(`no command "${sub}"${didYouMeanCommand(sub)}`);
    process.stdout.write(commandHelp(sub));
    return EXIT.OK;
  }
  if (!cmd) {
    if (values.help) { process.stdout.write(usage()); return EXIT.OK; }
    process.stderr.write(usage());
    return EXIT.USAGE_OR_CONFIG;
  }
  if (!COMMANDS[cmd]) return usageError(`unknown command "${cmd}"${didYouMeanCommand(cmd)}`);
  if (values.help) { process.stdout.write(commandHelp(cmd)); return EXIT.OK; }
  if (cmd === 'passwd') return (await import('./api/passwd.js')).passwdCommand();
  if (!values.config) return usageError(`${cmd}: --config FILE is required`, cmd);
  const file = values.config;
  switch (cmd) {
    case 'check': {
      const cfg = await loadInProcess(file);
      process.stdout.write(`${file}: ok (${cfg.upstreams.length} upstream(s))\n`);
      return EXIT.OK;
    }
    case 'run': return run(file, Boolean(values['manage-network']));
    case 'network':
      if (!['up', 'down', 'show', 'rules'].includes(sub ?? '')) return usageError(`network: expected up, down, show or rules${sub ? `, not "${sub}"` : ''}`, cmd);
      return network(sub, await loadInProcess(file));
    case 'cache':
      if (sub !== 'flush') return usageError(`cache: expected "flush"${sub ? `, not "${sub}"` : ''}`, cmd);
      return cacheFlush(await loadInProcess(file), arg);
    default:
      return usageError(`unknown command "${cmd}"`);
  }
}

function didYouMeanCommand(word: string): string {
  const close = Object.keys(COMMANDS).find((c) => c.startsWith(word.slice(0, 2)) || word.startsWith(c.slice(0, 3)));
  return close ? ` (did you mean "${close}"?)` : '';
}

/** Short-lived commands load the config in process; yaml and ajv load only for them. */
async function loadInProcess(file: string): Promise<Config> {
  return (await import('./config/load.js')).loadConfigFile(file);
}

async function run(file: string, manageNetwork: boolean): Promise<number> {
  const cfg = await loadConfigIsolated(file);
  applyConfiguredSemiSpace(cfg.memory.semiSpaceMiB);
  const log = defaultLog;
  if (isWorker()) {
    const server = await runWorker(cfg, log);
    handleSignals(file, log, server, null);
    return new Promise<number>(() => { /* runs until a signal */ });
  }
  const n = workerCount(cfg);
  const net = manageNetwork ? await import('./network/cli-glue.js') : null;
  if (n > 1) {
    const primary = await runPrimary(cfg, n, log);
    if (net) await net.upForRun(cfg, log);
    process.on('SIGHUP', () => primary.reload());
    const stop = async (sig: string) => {
      log('info', 'stopping workers', { signal: sig });
      await primary.stop();
      if (net) await net.downForExit(cfg, log);
      log('info', 'stopped');
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
    return new Promise<number>(() => { /* runs until a signal */ });
  }
  const server = new DnsServer(cfg, log);
  await server.start();
  // After the listeners are bound, so intercepted traffic never meets a missing socket. The signal
  // handlers go in first: a SIGTERM during set-up still waits for it, then removes what it installed.
  const netUp = net ? net.upForRun(cfg, log) : Promise.resolve();
  handleSignals(file, log, server, net ? async () => { await netUp.catch(() => undefined); await net.downForExit(cfg, log); } : null);
  await netUp;
  return new Promise<number>(() => { /* runs until a signal */ });
}

function handleSignals(file: string, log: typeof defaultLog, server: DnsServer, onExit: (() => Promise<void>) | null): void {
  let stopping = false;
  // Reloads run one after another: a second SIGHUP during a load waits for it rather than racing it.
  let reloading: Promise<void> = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
      try {
        const next = await loadConfigIsolated(file);
        if (stopping) return;
        server.reload(next);
        log('info', 'config reloaded', { file });
      } catch (e) {
        server.reloadFailures++;
        log('error', 'reload rejected; keeping the running config', { error: (e as Error).message });
      }
    });
  });
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    log('info', 'draining', { signal: sig, inflight: server.inflight });
    await server.drain();
    if (onExit) await onExit();
    log('info', 'stopped', { drainTimeouts: server.drainTimeouts });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

async function network(sub: string | undefined, cfg: Config): Promise<number> {
  const net = await import('./network/cli-glue.js');
  return net.networkCommand(sub, cfg);
}

async function cacheFlush(cfg: Config, name?: string): Promise<number> {
  if (!cfg.metrics.listen) {
    process.stderr.write('dns-tproxy cache flush: the config has no metrics.listen (the admin endpoint the flush is sent to)\n');
    return EXIT.USAGE_OR_CONFIG;
  }
  const [host, port] = splitHostPort(cfg.metrics.listen);
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const url = `${base}/admin/cache/flush${name ? `?name=${encodeURIComponent(name)}` : ''}`;
  const token = (cfg.metrics as { adminToken?: string }).adminToken;
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
    process.stderr.write(`dns-tproxy cache flush: no server answers at ${base} (${cause}); is dns-tproxy running with this config?\n`);
    return EXIT.UNREACHABLE;
  }
  const body = (await res.text()).trim();
  if (!res.ok) {
    process.stderr.write(`dns-tproxy cache flush: the server refused: HTTP ${res.status} ${body.split('\n')[0]}\n`);
    return res.status === 401 || res.status === 403 ? EXIT.PERMISSION : EXIT.FAILED;
  }
  process.stdout.write(`${body}\n`);
  return EXIT.OK;
}

function splitHostPort(s: string): [string, string] {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(s);
  return m ? [m[1] === '0.0.0.0' ? '127.0.0.1' : m[1], m[2]] : ['127.0.0.1', '9153'];
}

main(process.argv.slice(2)).then((code) => { if (code !== undefined) process.exitCode = code; }, (e: unknown) => {
  const { line, code } = describeFailure(e);
  process.stderr.write(`${line}\n`);
  // A programming error keeps its stack, but only on request: the operator gets one line.
  if (process.env.DNS_TPROXY_DEBUG) process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = code;
});

/** One line and an exit code for anything that ends a command. */
function describeFailure(e: unknown): { line: string; code: number } {
  if (e instanceof ConfigError) return { line: `config error: ${e.message}`, code: EXIT.USAGE_OR_CONFIG };
  const errno = ((e as { cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code) as string | undefined;
  const msg = (e as Error).message ?? String(e);
  if (errno === 'EACCES' || errno === 'EPERM') return { line: `dns-tproxy: permission denied: ${msg}`, code: EXIT.PERMISSION };
  if (e instanceof DnsTproxyError) return { line: `dns-tproxy: ${msg} [${e.code}]`, code: EXIT.FAILED };
  return { line: `dns-tproxy: ${msg.split('\n')[0]}${errno ? ` (${errno})` : ''}`, code: EXIT.FAILED };
}
