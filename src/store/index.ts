// Creates the configured store and the device table. PostgreSQL (pg) loads only when configured.
import type { QueryStore } from './types.js';
import type { DeviceResolver } from '../devices/types.js';
import { resolveStoreConfig } from './config.js';
import { SqliteStore } from './sqlite.js';
import type { GroupOf } from './clients.js';
import { DeviceTable, type DevicesConfig } from '../devices/table.js';
import type { Registry } from 'prom-client';
import { CollectedMetric, type Sample } from '../metrics/collected.js';

type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface StoreDeps { stateDir: string; baseDir: string; log: Log; devices: DeviceResolver | null; groupOf?: GroupOf }

export async function createStore(raw: unknown, deps: StoreDeps): Promise<QueryStore | null> {
  const c = resolveStoreConfig(raw, deps.stateDir, deps.baseDir);
  const onError = (e: Error) => deps.log('warn', 'query store write failed; records dropped', { error: e.message });
  if (c.kind === 'off') return null;
  if (c.kind === 'postgres') {
    const { PgStore } = await import('./postgres.js');
    return PgStore.open({ url: c.url, retentionDays: c.retentionDays, gatewayId: c.gatewayId, queueMax: c.queueMax, devices: deps.devices, groupOf: deps.groupOf, onError });
  }
  try {
    return await SqliteStore.open({ path: c.path, retentionDays: c.retentionDays, maxBytes: c.maxBytes, cacheKiB: c.cacheKiB, queueMax: c.queueMax, devices: deps.devices, groupOf: deps.groupOf, onError });
  } catch (e) {
    // The implicit default store must not stop a gateway from serving DNS; an explicit one must work.
    if (c.explicit) throw e;
    deps.log('warn', 'query history off: cannot open the default store', { path: c.path, error: (e as Error).message });
    return null;
  }
}

export async function createDevices(raw: unknown, deps: { baseDir: string; log: Log }): Promise<DeviceTable | null> {
  if (raw === false) return null;
  return DeviceTable.create((raw ?? {}) as DevicesConfig, { baseDir: deps.baseDir, log: deps.log });
}

/** Store metrics, read at scrape time (no per-query prom-client calls). */
export function registerStoreMetrics(registry: Registry, store: () => QueryStore | null, devices?: () => DeviceTable | null): void {
  const add = (name: string, help: string, type: 'counter' | 'gauge', read: (s: QueryStore) => Sample[]) =>
    registry.registerMetric(new CollectedMetric(`dns_tproxy_${name}`, help, type, () => { const s = store(); return s ? read(s) : []; }) as never);
  add('store_written_total', 'Query records committed to the history store.', 'counter', (s) => [{ labels: { backend: s.backend }, value: s.written }]);
  add('store_dropped_total', 'Query records dropped before reaching the store (queue full or write failed).', 'counter', (s) => [{ labels: { backend: s.backend }, value: s.droppedUnwritten }]);
  add('store_batches_total', 'Write transactions committed by the history store.', 'counter', (s) => [{ labels: { backend: s.backend }, value: s.batches }]);
  add('store_queue_depth', 'Query records waiting to be written.', 'gauge', (s) => [{ labels: { backend: s.backend }, value: s.queueDepth }]);
  if (devices) {
    registry.registerMetric(new CollectedMetric('dns_tproxy_devices_known', 'Devices known from leases, config and the neighbour table.', 'gauge',
      () => { const d = devices(); return d ? [{ value: d.list().length }] : []; }) as never);
  }
}
