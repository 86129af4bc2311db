// `workers: N|auto`: N processes, each with its own SO_REUSEPORT transparent socket, cache and upstream
// connections. Processes rather than worker_threads: each owns its fds and addon state outright, and a
// crash takes down one worker, which the primary restarts. child_process.fork rather than cluster:
// cluster routes a worker's listen({fd}) through the primary, which cannot adopt our transparent fd. Each worker keeps its own cache, so a name
// is cached once per worker that sees it (the kernel hashes each client flow to one worker, so a
// client mostly meets a warm cache). The primary serves /metrics (summed over workers), /readyz and
// admin, and forwards SIGHUP/SIGTERM.
import { fork as forkProcess, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import type { Config } from './config/types.js';
import { DnsServer, type LogFn } from './server.js';
import { startHttp } from './metrics/http.js';

type Request = { kind: 'ready' } | { kind: 'flush'; name?: string } | { kind: 'top' } | { kind: 'metrics' };
type Worker = ChildProcess;
type Message = { dnsTproxy: 'req'; id: number; req: Request } | { dnsTproxy: 'res'; id: number; body: unknown } | { dnsTproxy: 'up' };

export function workerCount(cfg: Config): number {
  const w = cfg.workers;
  if (w === 'auto') return Math.max(1, os.availableParallelism());
  return w;
}

/** Primary: fork the workers, keep them running, serve HTTP for all of them. */
export async function runPrimary(cfg: Config, n: number, log: LogFn): Promise<{ reload(): void; stop(): Promise<void> }> {
  let stopping = false;
  let nextId = 1;
  const pending = new Map<number, (body: unknown) => void>();
  const fork = (index: number): Worker => {
    const w = forkProcess(process.argv[1], process.argv.slice(2), {
      env: { ...process.env, DNS_TPROXY_WORKER_INDEX: String(index) }, execArgv: process.execArgv, stdio: 'inherit',
    });
    w.on('message', (m: Message) => {
      if (m?.dnsTproxy === 'res') { pending.get(m.id)?.(m.body); pending.delete(m.id); }
    });
    w.on('exit', (code, signal) => {
      if (stopping) return;
      log('error', 'worker exited; restarting it', { index, code, signal });
      setTimeout(() => { workers[index] = fork(index); }, 500);
    });
    return w;
  };
  const workers = Array.from({ length: n }, (_, i) => fork(i));
  await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
    w.on('message', (m: Message) => { if (m?.dnsTproxy === 'up') resolve(); });
    w.once('exit', (code) => reject(new Error(`worker exited during start-up (code ${code})`)));
  })));
  const ask = (req: Request): Promise<unknown[]> => Promise.all(workers.map((w) => new Promise<unknown>((resolve) => {
    const id = nextId++;
    const timer = setTimeout(() => { pending.delete(id); resolve(null); }, 2000);
    pending.set(id, (b) => { clearTimeout(timer); resolve(b); });
    w.send({ dnsTproxy: 'req', id, req } satisfies Message);
  })));
  let http: Awaited<ReturnType<typeof startHttp>> | null = null;
  if (cfg.metrics.listen) {
    // Readiness and top-k are answered from the last poll so that HTTP handlers stay synchronous.
    let lastReady: { ready: boolean; reasons: string[] } = { ready: true, reasons: [] };
    let lastTop: unknown = {};
    const poll = async () => {
      const r = (await ask({ kind: 'ready' })) as Array<{ ready: boolean; reasons: string[] } | null>;
      const reasons = r.flatMap((x, i) => (x === null ? [`worker ${i} not responding`] : x.reasons.map((s) => `worker ${i}: ${s}`)));
      lastReady = { ready: reasons.length === 0, reasons };
      lastTop = { workers: await ask({ kind: 'top' }) };
    };
    await poll();
    const timer = setInterval(() => void poll(), 1000);
    timer.unref();
    http = await startHttp(cfg.metrics.listen, {
      registry: {
        metrics: async () => AggregatorRegistry.aggregate((await ask({ kind: 'metrics' })).filter(Boolean) as never).metrics(),
        contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE,
      } as unknown as import('prom-client').Registry,
      ready: () => lastReady,
      flushCacheAsync: async (name) => ((await ask({ kind: 'flush', name })) as number[]).reduce((a, b) => a + (b ?? 0), 0),
      json: { '/stats/top': () => lastTop },
      adminToken: cfg.metrics.adminToken, hosts: cfg.metrics.hosts,
    });
  }
  log('info', 'workers started', { workers: n });
  return {
    reload() { for (const w of workers) w.kill('SIGHUP'); },
    async stop() {
      stopping = true;
      await Promise.all(workers.map((w) => new Promise<void>((resolve) => {
        if (w.exitCode !== null || w.signalCode !== null) { resolve(); return; }
        w.once('exit', () => resolve());
        w.kill('SIGTERM');
      })));
      if (http) await new Promise<void>((r) => http!.close(() => r()));
    },
  };
}

/** Worker: a DnsServer on shared ports that answers the primary's requests. */
export async function runWorker(cfg: Config, log: LogFn): Promise<DnsServer> {
  const index = Number(process.env.DNS_TPROXY_WORKER_INDEX ?? 0);
  const server = new DnsServer(cfg, (level, msg, fields) => log(level, msg, { worker: index, ...fields }),
    { reusePort: true, tcp: index === 0, http: false });
  await server.start();
  process.on('message', async (m: Message) => {
    if (m?.dnsTproxy !== 'req') return;
    let body: unknown = null;
    if (m.req.kind === 'metrics') body = await server.registry.getMetricsAsJSON();
    else if (m.req.kind === 'ready') body = server.readiness();
    else if (m.req.kind === 'flush') body = server.cache?.flush(m.req.name) ?? 0;
    else if (m.req.kind === 'top') body = server.topSnapshot();
    process.send?.({ dnsTproxy: 'res', id: m.id, body } satisfies Message);
  });
  // Without the primary nobody restarts or supervises us: finish what is in flight and go.
  process.on('disconnect', () => { void server.drain().then(() => process.exit(0)); });
  process.send?.({ dnsTproxy: 'up' } satisfies Message);
  return server;
}

export const isWorker = (): boolean => process.env.DNS_TPROXY_WORKER_INDEX !== undefined && typeof process.send === 'function';
