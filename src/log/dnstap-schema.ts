// The dnstap config schema lives apart from the writer so that validating a config does not load
// protobufjs (~4 MB of resident memory) in servers that never enable dnstap.
/** JSON Schema (draft-07, ajv) for the `dnstap:` config key. Exactly one of socket / tcp. */
export const dnstapSchema = {
  $id: 'dns-tproxy/dnstap',
  type: 'object',
  additionalProperties: false,
  // exactly one of socket / tcp (subschemas repeat `type`/`properties` so ajv strict mode accepts them)
  oneOf: [
    { type: 'object', properties: { socket: { type: 'string' } }, required: ['socket'] },
    { type: 'object', properties: { tcp: { type: 'string' } }, required: ['tcp'] },
  ],
  properties: {
    socket: { type: 'string', minLength: 1, description: 'unix socket path of the Frame Streams collector' },
    tcp: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):\\d{1,5}$', description: 'host:port of the collector' },
    identity: { type: 'string', description: 'dnstap identity (e.g. hostname)' },
    version: { type: 'string', description: 'dnstap version string' },
    bufferFrames: { type: 'integer', minimum: 1, maximum: 10000000, default: 10000 },
    messages: {
      type: 'object',
      additionalProperties: false,
      properties: {
        clientQuery: { type: 'boolean', default: true },
        clientResponse: { type: 'boolean', default: true },
        forwarderQuery: { type: 'boolean', default: true },
        forwarderResponse: { type: 'boolean', default: true },
      },
    },
    reconnectMinMs: { type: 'integer', minimum: 10, default: 250 },
    reconnectMaxMs: { type: 'integer', minimum: 10, default: 10000 },
    dohAsTcp: { type: 'boolean', default: false, description: 'report DoH/DoT upstream traffic as TCP for old readers' },
  },
} as const;
