// Answers built inside the synchronous path are written here and copied out before anything else can
// run, so one buffer serves all of them. Coalesced waiters are answered while another answer may still
// sit in `syncScratch`, so they get their own.
export const MAX_MESSAGE = 65535 + 512;
export const syncScratch = Buffer.allocUnsafe(MAX_MESSAGE);
export const waiterScratch = Buffer.allocUnsafe(MAX_MESSAGE);
