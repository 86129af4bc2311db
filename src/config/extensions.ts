// Schema fragments for keys owned by other subsystems, gathered in one place so the top level can
// still reject unknown keys.
import { queryLogSchema } from '../log/query-log.js';
import { dnstapSchema } from '../log/dnstap-schema.js';
import { networkSchema } from '../network/index.js';
import { filterConfigSchema } from '../filter/config.js';
import { limitsSchema } from '../pipeline/ratelimit.js';
import { storeSchema } from '../store/config.js';
import { devicesSchema } from '../devices/table.js';
import { bypassSchema } from '../network/bypass.js';
import { consoleSchema } from '../api/config.js';

export function extensionSchemas(): Record<string, object> {
  return {
    ...filterConfigSchema,
    log: queryLogSchema,
    dnstap: dnstapSchema,
    network: networkSchema,
    limits: limitsSchema,
    /** Query history (issue 17): SQLite under stateDir by default, PostgreSQL with `url`, `false` for none. */
    store: storeSchema,
    /** Device names for client addresses: DHCP leases, neighbour table, reverse lookups, config names. */
    devices: devicesSchema,
    bypass: bypassSchema,
    console: consoleSchema,
    stats: {
      type: 'object', additionalProperties: false,
      properties: {
        /** Keys kept by each top-k table (/stats/top); 0 turns them off. */
        topK: { type: 'integer', minimum: 0, maximum: 100000 },
        /** Count one query in N into the top-k tables, to keep the cost off the hot path. */
        sampleEvery: { type: 'integer', minimum: 1 },
      },
    },
  };
}
