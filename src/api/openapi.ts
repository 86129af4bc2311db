// GET /api/v1/openapi.json: the contract of the console API (OpenAPI 3.1, JSON Schema 2020-12). A
// test validates real responses against these schemas, so they must say what the server sends.
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const nullable = (type: string) => ({ type: [type, 'null'] });
const json = (schema: object) => ({ 'application/json': { schema } });
const ok = (description: string, schema: object) => ({ description, content: json(schema) });
const err = (description: string) => ({ description, content: json(ref('Error')) });

const common = {
  '401': err('No valid session: log in first.'),
  '421': err('The Host header names neither the console\'s address nor a configured name (DNS rebinding).'),
};
const changing = {
  ...common,
  '400': err('Bad input: the error says which field and why.'),
  '403': err('Missing Origin, or an Origin other than the console\'s own (cross-site request).'),
  '413': err('Body larger than 64 KiB.'),
  '415': err('Body is not application/json.'),
};

const timeParam = (name: string, description: string) => ({
  name, in: 'query', required: false, description: `${description} Milliseconds since 1970, or an ISO 8601 date.`,
  schema: { type: 'string' },
});
const q = (name: string, description: string, schema: object = { type: 'string' }) => ({ name, in: 'query', required: false, description, schema });

const schemas = {
  Error: {
    type: 'object', required: ['error', 'code'],
    properties: { error: { type: 'string', description: 'What went wrong, for people.' }, code: { type: 'string', description: 'What went wrong, for programs (bad_parameter, bad_json, unauthenticated, bad_origin, bad_host, rate_limited, ...).' } },
  },
  LoginRequest: {
    type: 'object', required: ['user', 'password'], additionalProperties: false,
    properties: { user: { type: 'string', minLength: 1, maxLength: 128 }, password: { type: 'string', maxLength: 1024 } },
  },
  Session: {
    type: 'object', required: ['user', 'expiresAt'],
    properties: { user: { type: 'string' }, expiresAt: { type: 'integer', description: 'ms since 1970 when the session ends unless used (idle expiry), capped by the absolute lifetime.' } },
  },
  QueryRecord: {
    type: 'object', required: ['time', 'client', 'server', 'serverPort', 'transport', 'qname', 'qtype', 'kind'],
    properties: {
      id: { type: 'string', description: 'Opaque, orders like time.' },
      time: { type: 'number', description: 'ms since 1970 when the query arrived.' },
      client: { type: 'string', description: 'Client address.' },
      clientPort: { type: 'integer' },
      device: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' }, mac: { type: 'string' } } },
      server: { type: 'string', description: 'The original destination the client sent the query to (TPROXY), or our listener.' },
      serverPort: { type: 'integer' },
      transport: { type: 'string' },
      qname: { type: 'string' },
      qtype: { type: 'string' },
      kind: { enum: ['query', 'dropped', 'bypass'] },
      rcode: { type: 'string' },
      answeredBy: { enum: ['cache', 'stale', 'upstream', 'local', 'forward', 'blocked'] },
      group: { type: 'string' },
      list: { type: 'string', description: 'The list (or "runtime" for an API rule) that decided.' },
      rule: { type: 'string' },
      dropReason: { type: 'string' },
      upstream: { type: 'string' },
      upstreamLatencyMs: { type: 'number' },
      latencyMs: { type: 'number' },
      answers: { type: 'array', items: { type: 'string' } },
      gateway: { type: 'string' },
    },
  },
  SearchResult: {
    type: 'object', required: ['items', 'nextCursor'],
    properties: { items: { type: 'array', items: ref('QueryRecord') }, nextCursor: { ...nullable('string'), description: 'Pass as cursor= for the next (older) page; null on the last page.' } },
  },
  TopEntry: { type: 'object', required: ['key', 'count'], properties: { key: { type: 'string' }, count: { type: 'number' }, name: { type: 'string' } } },
  StatsResult: {
    type: 'object', required: ['from', 'to', 'step', 'total', 'blocked', 'cacheHits', 'dropped', 'series', 'topClients', 'topNames', 'topBlocked'],
    properties: {
      from: { type: 'number' }, to: { type: 'number' }, step: { type: 'number', description: 'Bucket width, ms.' },
      total: { type: 'number' }, blocked: { type: 'number' }, cacheHits: { type: 'number' }, dropped: { type: 'number' },
      series: {
        type: 'array',
        items: { type: 'object', required: ['time', 'total', 'blocked', 'cacheHits'], properties: { time: { type: 'number' }, total: { type: 'number' }, blocked: { type: 'number' }, cacheHits: { type: 'number' } } },
      },
      topClients: { type: 'array', items: ref('TopEntry') },
      topNames: { type: 'array', items: ref('TopEntry') },
      topBlocked: { type: 'array', items: ref('TopEntry') },
    },
  },
  Client: {
    type: 'object', required: ['id', 'addresses'],
    properties: {
      id: { type: 'string', description: 'mac:<MAC>, name:<name> or ip:<address>.' },
      name: { type: 'string' }, mac: { type: 'string' }, group: { type: 'string' },
      addresses: { type: 'array', items: { type: 'string' } },
      lastSeen: { type: 'number' }, queries24h: { type: 'number' },
    },
  },
  ClientGroup: {
    type: 'object', required: ['id', 'group'],
    properties: { id: { type: 'string' }, group: { ...nullable('string'), description: 'null removes the assignment (the config\'s groups decide again).' } },
  },
  Rule: {
    type: 'object', required: ['id', 'action', 'name', 'createdAt', 'createdBy'],
    properties: {
      id: { type: 'string' }, action: { enum: ['block', 'allow'] },
      name: { type: 'string', description: 'The rule covers this name and all its subdomains.' },
      group: { type: 'string', description: 'Only clients of this group; absent = everyone.' },
      createdAt: { type: 'number' }, createdBy: { type: 'string' },
    },
  },
  RuleRequest: {
    type: 'object', required: ['action', 'name'],
    properties: { action: { enum: ['block', 'allow'] }, name: { type: 'string' }, group: { type: 'string' } },
  },
  AuditEntry: {
    type: 'object', required: ['time', 'user', 'action', 'target'],
    properties: {
      time: { type: 'number' }, user: { type: 'string' }, action: { type: 'string' }, target: { type: 'string' },
      detail: { type: 'object' }, from: { type: 'string' },
    },
  },
  PauseEntry: {
    type: 'object', required: ['group', 'until', 'remainingSeconds'],
    properties: { group: { ...nullable('string'), description: 'null = everyone.' }, until: { ...nullable('number'), description: 'null = until resumed.' }, remainingSeconds: nullable('number') },
  },
  PauseState: {
    type: 'object', required: ['paused', 'until', 'remainingSeconds', 'entries'],
    properties: {
      paused: { type: 'boolean', description: 'Blocking is paused for everyone.' },
      until: nullable('number'), remainingSeconds: nullable('number'),
      entries: { type: 'array', items: ref('PauseEntry'), description: 'Every pause in force, for everyone and per group.' },
    },
  },
  PauseRequest: {
    type: 'object',
    properties: { seconds: { type: 'integer', minimum: 1, maximum: 2592000, description: 'Omit to pause until resumed.' }, group: { type: 'string' } },
  },
  List: {
    type: 'object', required: ['name', 'type', 'source', 'enabled', 'origin', 'rules', 'lastRefresh', 'lastError'],
    properties: {
      name: { type: 'string' }, type: { enum: ['url', 'path'] }, source: { type: 'string' }, enabled: { type: 'boolean' },
      origin: { enum: ['config', 'api'], description: 'Lists from the config file can be disabled but not deleted.' },
      rules: { type: 'number' }, badLines: { type: 'number' }, unsupported: { type: 'number' },
      lastRefresh: nullable('number'), lastSuccess: nullable('number'), lastError: nullable('string'),
      failures: { type: 'number' }, fromCache: { type: 'boolean' },
    },
  },
  ListRequest: {
    type: 'object',
    properties: {
      name: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$', description: 'Derived from the URL or path when omitted.' },
      url: { type: 'string' }, path: { type: 'string' }, refresh: { type: ['string', 'number'] }, enabled: { type: 'boolean' },
    },
  },
  Health: {
    type: 'object', required: ['status', 'problems', 'upstreams', 'lists', 'pause', 'store', 'rules'],
    properties: {
      status: { enum: ['ok', 'degraded'] },
      problems: { type: 'array', items: { type: 'string' }, description: 'Anything wrong, worded for the top of the console.' },
      upstreams: {
        type: 'array',
        items: {
          type: 'object', required: ['name', 'healthy', 'requests', 'answers', 'errors', 'avgLatencyMs'],
          properties: { name: { type: 'string' }, healthy: { type: 'boolean' }, requests: { type: 'number' }, answers: { type: 'number' }, errors: { type: 'object', additionalProperties: { type: 'number' } }, avgLatencyMs: nullable('number') },
        },
      },
      lists: { type: 'array', items: ref('List') },
      pause: ref('PauseState'),
      store: {
        type: ['object', 'null'],
        properties: { backend: { type: 'string' }, written: { type: 'number' }, droppedUnwritten: { type: 'number' }, queueDepth: { type: 'number' } },
      },
      rules: { type: 'integer' },
    },
  },
};

const body = (schema: object) => ({ required: true, content: json(schema) });
const idParam = (name: string, description: string) => ({ name, in: 'path', required: true, description, schema: { type: 'string' } });

const paths = {
  '/login': {
    post: {
      summary: 'Log in: sets an HttpOnly, SameSite=Strict session cookie (Secure over HTTPS).', security: [],
      requestBody: body(ref('LoginRequest')),
      responses: {
        '200': ok('Logged in.', ref('Session')), '400': err('Malformed body.'), '401': err('Wrong user or password.'),
        '403': err('Missing or foreign Origin.'), '429': { ...err('Too many attempts from this address (or overall).'), headers: { 'Retry-After': { schema: { type: 'integer' } } } },
      },
    },
  },
  '/logout': { post: { summary: 'End the session.', security: [], responses: { '200': ok('Logged out.', { type: 'object', required: ['ok'], properties: { ok: { const: true } } }), '403': err('Missing or foreign Origin.') } } },
  '/session': { get: { summary: 'The current session.', responses: { '200': ok('The session.', ref('Session')), ...common } } },
  '/queries': {
    get: {
      summary: 'Query history, newest first.',
      parameters: [
        q('client', 'Client address or device name (exact, case-insensitive).'),
        q('name', 'Substring of the query name.'),
        q('type', 'Query type: A, AAAA, ...'),
        q('result', 'blocked, cache, stale, upstream, local, forward, dropped, or an RCODE name (NXDOMAIN).'),
        timeParam('from', 'Inclusive lower bound.'), timeParam('to', 'Exclusive upper bound.'),
        q('limit', 'Items per page, 1..1000 (default 100).', { type: 'integer', minimum: 1, maximum: 1000 }),
        q('cursor', 'nextCursor of the previous page.'),
      ],
      responses: { '200': ok('A page of records.', ref('SearchResult')), '400': err('Bad parameter.'), ...common, '503': err('The query store is off.') },
    },
  },
  '/stats': {
    get: {
      summary: 'Totals, a time series and top lists over a window (default: the last 24 h).',
      parameters: [
        timeParam('from', 'Start.'), timeParam('to', 'End (default now).'),
        q('step', 'Bucket width: milliseconds or a duration (5m, 1h); at least 1 s, at most 10000 buckets.'),
        q('top', 'Entries per top list, 1..100 (default 10).', { type: 'integer' }),
      ],
      responses: { '200': ok('Statistics.', ref('StatsResult')), '400': err('Bad parameter.'), ...common, '503': err('The query store is off.') },
    },
  },
  '/clients': {
    get: {
      summary: 'Devices: addresses, MAC, name, group, last seen, queries in the last 24 h.',
      responses: { '200': ok('Devices.', { type: 'object', required: ['clients'], properties: { clients: { type: 'array', items: ref('Client') } } }), ...common },
    },
  },
  '/clients/{id}': {
    put: {
      summary: 'Put a device into a group (persisted, audited). Takes effect on its next query.',
      parameters: [idParam('id', 'Device id from GET /clients (mac:..., name:..., ip:...).')],
      requestBody: body({ type: 'object', required: ['group'], properties: { group: nullable('string') } }),
      responses: { '200': ok('Assigned.', ref('ClientGroup')), ...changing },
    },
  },
  '/rules': {
    get: { summary: 'Block/allow rules set through the API.', responses: { '200': ok('Rules.', { type: 'object', required: ['rules'], properties: { rules: { type: 'array', items: ref('Rule') } } }), ...common } },
    post: {
      summary: 'Add a rule. It covers the name and its subdomains and takes effect on the next query. An allow rule beats the lists\' blocks and CNAME inspection; a block rule beats everything except an allow rule.',
      requestBody: body(ref('RuleRequest')),
      responses: {
        '201': ok('Created.', { type: 'object', required: ['rule', 'created'], properties: { rule: ref('Rule'), created: { const: true } } }),
        '200': ok('The same rule already existed.', { type: 'object', required: ['rule', 'created'], properties: { rule: ref('Rule'), created: { const: false } } }),
        ...changing,
      },
    },
  },
  '/rules/{id}': {
    delete: {
      summary: 'Remove a rule.', parameters: [idParam('id', 'Rule id.')],
      responses: { '200': ok('Removed.', { type: 'object', required: ['rule'], properties: { rule: ref('Rule') } }), '404': err('No such rule.'), ...changing },
    },
  },
  '/audit': {
    get: {
      summary: 'Who changed which rule, list, pause or device group, newest first.',
      parameters: [q('limit', '1..1000 (default 100).', { type: 'integer' }), timeParam('before', 'Only entries before this time (paging).')],
      responses: { '200': ok('Entries.', { type: 'object', required: ['entries'], properties: { entries: { type: 'array', items: ref('AuditEntry') } } }), ...common },
    },
  },
  '/pause': {
    get: { summary: 'Whether blocking is paused, for everyone and per group.', responses: { '200': ok('Pause state.', ref('PauseState')), ...common } },
    post: { summary: 'Pause blocking (lists and rules; local records and forward zones still apply) for everyone or a group; it resumes by itself after `seconds`.', requestBody: body(ref('PauseRequest')), responses: { '200': ok('Pause state.', ref('PauseState')), ...changing } },
    delete: { summary: 'Resume blocking: every pause, or only ?group=NAME.', parameters: [q('group', 'Resume this group only.')], responses: { '200': ok('Pause state.', ref('PauseState')), ...changing } },
  },
  '/stream': {
    get: {
      summary: 'Server-sent events: `event: query` with a QueryRecord as data; `event: dropped` with {"dropped": N} when this client fell behind and N records were skipped; comment heartbeats every 15 s.',
      parameters: [q('client', 'Only this client address or device name.'), q('name', 'Only names containing this.')],
      responses: { '200': { description: 'An event stream.', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...common, '503': err('The query store is off, or too many streams are open.') },
    },
  },
  '/health': { get: { summary: 'Upstreams, lists, pause, store, and anything wrong.', responses: { '200': ok('Health.', ref('Health')), ...common } } },
  '/lists': {
    get: { summary: 'Filter lists, disabled ones included.', responses: { '200': ok('Lists.', { type: 'object', required: ['lists'], properties: { lists: { type: 'array', items: ref('List') } } }), ...common } },
    post: {
      summary: 'Add a list by URL or path (persisted under stateDir, audited). The filter is rebuilt; a list that cannot be loaded is refused and nothing changes.',
      requestBody: body(ref('ListRequest')),
      responses: { '201': ok('Added.', { type: 'object', required: ['list'], properties: { list: ref('List') } }), '409': err('A list with that name exists.'), ...changing },
    },
  },
  '/lists/{name}': {
    patch: {
      summary: 'Enable or disable a list.', parameters: [idParam('name', 'List name.')],
      requestBody: body({ type: 'object', required: ['enabled'], properties: { enabled: { type: 'boolean' } } }),
      responses: { '200': ok('Changed.', { type: 'object', required: ['list'], properties: { list: ref('List') } }), '404': err('No such list.'), ...changing },
    },
    delete: {
      summary: 'Remove a list added through the API (config lists can only be disabled).', parameters: [idParam('name', 'List name.')],
      responses: { '200': ok('Removed.', { type: 'object', required: ['deleted'], properties: { deleted: { type: 'string' } } }), '404': err('No such list.'), '409': err('A config-file list.'), ...changing },
    },
  },
  '/lists/{name}/refresh': {
    post: {
      summary: 'Download (URL) or re-read (path) a list now.', parameters: [idParam('name', 'List name.')],
      responses: { '200': ok('Refreshed.', { type: 'object', required: ['list'], properties: { list: ref('List') } }), '404': err('No such list.'), '409': err('The list is disabled.'), ...changing },
    },
  },
  '/openapi.json': { get: { summary: 'This document.', security: [], responses: { '200': { description: 'OpenAPI 3.1.', content: json({ type: 'object' }) } } } },
};

let doc: object | null = null;

export function openApiDocument(): object {
  doc ??= {
    openapi: '3.1.0',
    info: {
      title: 'dns-tproxy console API', version: '1',
      description: 'Query history, statistics, runtime block/allow rules, pause, lists and devices. Every response carries strict security headers. Requests must name the console by its listen address or a console.names entry in Host (else 421). Endpoints other than login, logout and this document need the session cookie from POST /login (else 401). POST, PUT, PATCH and DELETE must carry an Origin equal to the console\'s own (else 403). Errors are {"error": message, "code": code}.',
    },
    servers: [{ url: '/api/v1' }],
    security: [{ session: [] }],
    components: { securitySchemes: { session: { type: 'apiKey', in: 'cookie', name: 'dns_tproxy_session' } }, schemas },
    paths,
  };
  return doc;
}
