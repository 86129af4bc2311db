// Who changed what: one JSON line per change (rules, pause, lists, device groups, logins) in
// <stateDir>/audit.log. Appended synchronously, so an answered API call is always on record. The file is
// rotated to audit.log.1 past a size cap, so it cannot fill the disk.
import fs from 'node:fs';
import path from 'node:path';

export interface AuditEntry {
  time: number;
  user: string;
  /** e.g. "rule.add", "rule.delete", "pause", "resume", "list.add", "list.enable", "client.group", "login.failed" */
  action: string;
  /** What was changed, in the terms of the API request. */
  target: string;
  detail?: Record<string, unknown>;
  /** Client address of the request. */
  from?: string;
}

const MAX_BYTES = 4 * 1024 * 1024;
/** Bytes read back from the end of the file for GET /api/v1/audit. */
const TAIL_BYTES = 1024 * 1024;

export class AuditLog {
  readonly file: string;
  writeErrors = 0;
  constructor(stateDir: string, private readonly now: () => number = Date.now) {
    this.file = path.join(stateDir, 'audit.log');
  }

  /** Throws when the entry cannot be written: a change that cannot be recorded is reported as failed. */
  record(e: Omit<AuditEntry, 'time'>): AuditEntry {
    const entry: AuditEntry = { time: this.now(), ...e };
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      try {
        if (fs.statSync(this.file).size > MAX_BYTES) fs.renameSync(this.file, `${this.file}.1`);
      } catch { /* no file yet */ }
      fs.appendFileSync(this.file, JSON.stringify(entry) + '\n', { mode: 0o600 });
    } catch (err) {
      this.writeErrors++;
      throw err;
    }
    return entry;
  }

  /** Newest first. Lines that do not parse (a torn last line) are skipped. */
  read(limit: number, before?: number): AuditEntry[] {
    let text = '';
    try {
      const fd = fs.openSync(this.file, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const start = Math.max(0, size - TAIL_BYTES);
        const buf = Buffer.alloc(size - start);
        fs.readSync(fd, buf, 0, buf.length, start);
        text = buf.toString('utf8');
        if (start > 0) text = text.slice(text.indexOf('\n') + 1);
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: AuditEntry[] = [];
    const lines = text.split('\n');
    for (let i = lines.length - 1; i >= 0 && out.length < limit; i--) {
      if (!lines[i]) continue;
      try {
        const e = JSON.parse(lines[i]!) as AuditEntry;
        if (before !== undefined && e.time >= before) continue;
        out.push(e);
      } catch { /* torn line */ }
    }
    return out;
  }
}
