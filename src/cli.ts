#!/usr/bin/env node
// dns-tproxy command line: run, check, network up|down|show, cache flush.
import { parseArgs } from 'node:util';
import { applyConfiguredSemiSpace } from './heap-tuning.js';
import { loadConfigIsolated } from './config/load-isolated.js';
import { DnsServer, defaultLog } from './server.js';
import { ConfigError, DnsTproxyError } from './errors.js';
import type { Config } from './config/types.js';
import { isWorker, runPrimary, runWorker, workerCount } from './workers.js';

const USAGE = `usage:
  dns-tproxy run --config FILE [--manage-network]   serve (SIGHUP reloads, SIGTERM drains)
  dns-tproxy check --config FILE                    validate the config, exit non-zero with the reason
  dns-tproxy network up|down|show|rules --config FILE
                                                    install / remove / inspect / print nft + policy routing
  dns-tproxy cache flush [NAME] --config FILE       flush the cache (all, or NAME and below)
  dns-tproxy passwd                                 read a password on stdin, print its hash for console.users
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: { config: { type: 'string', short: 'c' }, 'manage-network': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const [cmd, sub, arg] = positionals;
  if (values.help || !cmd) { process.stdout.write(USAGE); return cmd ? 0 : 2; }
  if (cmd === 'passwd') return (await import('./api/passwd.js')).passwdCommand();
  if (!values.config) { process.stderr.write(`dns-tproxy ${cmd}: --config FILE is required\n${USAGE}`); return 2; }
  const file = values.config;
  switch (cmd) {
    case 'check': {
      const cfg = await loadInProcess(file);
      process.stdout.write(`${file}: ok (${cfg.upstreams.length} upstream(s))\n`);
      return 0;
    }
    case 'run': return run(file, Boolean(values['manage-network']));
    case 'network': return network(sub, await loadInProcess(file));
    case 'cache': {
      if (sub !== 'flush') { process.stderr.write(USAGE); return 2; }
      return cacheFlush(await loadInProcess(file), arg);
    }
    default:
      process.stderr.write(`unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
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
  if (!cfg.metrics.listen) { process.stderr.write('cache flush needs metrics.listen (the admin endpoint) in the config\n'); return 2; }
  const [host, port] = splitHostPort(cfg.metrics.listen);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/admin/cache/flush${name ? `?name=${encodeURIComponent(name)}` : ''}`;
  const res = await fetch(url, { method: 'POST' });
  const body = await res.text();
  process.stdout.write(body);
  return res.ok ? 0 : 1;
}

function splitHostPort(s: string): [string, string] {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(s);
  return m ? [m[1] === '0.0.0.0' ? '127.0.0.1' : m[1], m[2]] : ['127.0.0.1', '9153'];
}

main(process.argv.slice(2)).then((code) => { if (code !== undefined) process.exitCode = code; }, (e: unknown) => {
  if (e instanceof ConfigError) process.stderr.write(`config error: ${e.message}\n`);
  else if (e instanceof DnsTproxyError) process.stderr.write(`${e.code}: ${e.message}\n`);
  else if ((e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') process.stderr.write(`${(e as Error).message}\n${USAGE}`);
  else process.stderr.write(`fatal: ${(e as Error).stack ?? e}\n`);
  process.exitCode = (e instanceof ConfigError) ? 2 : 1;
});
