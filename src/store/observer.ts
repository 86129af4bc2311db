// Feeds the store from the end of the pipeline: one record per answered query (after the answer was
// sent) and per dropped query. Dropped datagrams can be a flood, so they are recorded at a bounded
// rate and the rest only counted.
import type { QueryObserver } from '../pipeline/finish.js';
import type { QueryContext } from '../pipeline/context.js';
import type { DeviceResolver } from '../devices/types.js';
import type { QueryStore } from './types.js';
import { buildDroppedRecord, buildRecord } from './record.js';

/** Dropped queries recorded per second at most. */
export const DROPPED_RECORDS_PER_SECOND = 50;

export class StoreObserver implements QueryObserver {
  private dropWindow = 0;
  private dropsInWindow = 0;
  /** Dropped queries not recorded because of the rate bound. */
  droppedNotRecorded = 0;

  constructor(readonly store: QueryStore, readonly devices: DeviceResolver | null) {}

  answered(ctx: QueryContext, wire: Uint8Array, off: number, len: number): void {
    if (ctx.responder.transport === ('internal' as string)) return;
    this.store.append(buildRecord(ctx, wire, off, len, this.devices));
  }

  dropped(ctx: QueryContext, reason: string): void {
    const sec = Math.floor(performance.now() / 1000);
    if (sec !== this.dropWindow) { this.dropWindow = sec; this.dropsInWindow = 0; }
    if (++this.dropsInWindow > DROPPED_RECORDS_PER_SECOND) { this.droppedNotRecorded++; return; }
    this.store.append(buildDroppedRecord(ctx, reason, this.devices));
  }
}
