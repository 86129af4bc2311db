// GET /api/v1/stream: server-sent events of live query records. Each client has a bounded queue; when
// its connection cannot keep up, the oldest queued records are dropped, counted, and the client is
// told how many in a `dropped` event. A comment line every 15 s keeps proxies and idle timers quiet.
import type http from 'node:http';
import type { QueryRecord, QueryStore } from '../store/types.js';

export interface StreamOptions {
  /** Records queued per client before the oldest are dropped (default 1000). */
  maxQueue?: number;
  heartbeatMs?: number;
  /** Only records for which this returns true are sent. */
  filter?: (r: QueryRecord) => boolean;
}

export class StreamStats {
  clients = 0;
  sent = 0;
  dropped = 0;
}

export function serveStream(req: http.IncomingMessage, res: http.ServerResponse, store: QueryStore, stats: StreamStats, opts: StreamOptions = {}): void {
  const maxQueue = opts.maxQueue ?? 1000;
  // A ring: no array shifting per record while a slow client is behind.
  const ring: (QueryRecord | undefined)[] = new Array(maxQueue);
  let head = 0;
  let count = 0;
  let droppedPending = 0;
  let waitingDrain = false;
  let scheduled = false;
  let closed = false;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-accel-buffering': 'no',
  });
  res.write(': stream open\nretry: 3000\n\n');
  stats.clients++;

  const flush = () => {
    scheduled = false;
    if (closed || waitingDrain) return;
    let chunk = '';
    if (droppedPending > 0) {
      chunk += `event: dropped\ndata: {"dropped":${droppedPending}}\n\n`;
      droppedPending = 0;
    }
    // Write in slices so one flush does not build an unbounded string.
    let n = 0;
    while (count > 0 && n < 256) {
      const r = ring[head]!;
      ring[head] = undefined;
      head = (head + 1) % maxQueue;
      count--;
      n++;
      chunk += `event: query\ndata: ${JSON.stringify(r)}\n\n`;
    }
    stats.sent += n;
    if (chunk && !res.write(chunk)) {
      waitingDrain = true;
      res.once('drain', () => { waitingDrain = false; schedule(); });
      return;
    }
    if (count > 0) schedule();
  };
  const schedule = () => { if (!scheduled && !closed) { scheduled = true; setImmediate(flush); } };

  const unsubscribe = store.subscribe((r) => {
    if (closed) return;
    if (opts.filter && !opts.filter(r)) return;
    if (count === maxQueue) {
      ring[head] = undefined;
      head = (head + 1) % maxQueue;
      count--;
      droppedPending++;
      stats.dropped++;
    }
    ring[(head + count) % maxQueue] = r;
    count++;
    if (!waitingDrain) schedule();
  });
  const heartbeat = setInterval(() => { if (!waitingDrain) res.write(': heartbeat\n\n'); }, opts.heartbeatMs ?? 15_000);
  heartbeat.unref();
  const end = () => {
    if (closed) return;
    closed = true;
    stats.clients--;
    clearInterval(heartbeat);
    unsubscribe();
    ring.fill(undefined);
  };
  req.on('close', end);
  res.on('close', end);
  res.on('error', end);
}
