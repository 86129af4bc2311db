/**
 * Frame Streams (fstrm) framing, bidirectional mode.
 *
 * Data frame:     u32be length (> 0) | payload
 * Control frame:  u32be 0 (escape) | u32be control length | u32be control type | fields…
 *   field:        u32be field type (1 = CONTENT_TYPE) | u32be length | bytes
 * Control types:  ACCEPT=1 START=2 STOP=3 READY=4 FINISH=5
 *
 * Writer handshake: -> READY(ct) ; <- ACCEPT(ct) ; -> START(ct) ; -> data… ; -> STOP ; <- FINISH
 */

export const FSTRM_CONTROL_ACCEPT = 0x01;
export const FSTRM_CONTROL_START = 0x02;
export const FSTRM_CONTROL_STOP = 0x03;
export const FSTRM_CONTROL_READY = 0x04;
export const FSTRM_CONTROL_FINISH = 0x05;
export const FSTRM_FIELD_CONTENT_TYPE = 0x01;
/** control frames larger than this are a protocol error (per the fstrm spec) */
export const FSTRM_MAX_CONTROL_LEN = 512;

export interface ControlFrame {
  type: number;
  contentTypes: string[];
}

export function encodeControl(type: number, contentTypes: string[] = []): Buffer {
  const fields = contentTypes.map((ct) => {
    const b = Buffer.from(ct, 'utf8');
    const h = Buffer.alloc(8);
    h.writeUInt32BE(FSTRM_FIELD_CONTENT_TYPE, 0);
    h.writeUInt32BE(b.length, 4);
    return Buffer.concat([h, b]);
  });
  const body = Buffer.concat([Buffer.alloc(4), ...fields]);
  body.writeUInt32BE(type, 0);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(0, 0);
  head.writeUInt32BE(body.length, 4);
  return Buffer.concat([head, body]);
}

export function encodeData(payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(4 + payload.length);
  b.writeUInt32BE(payload.length, 0);
  b.set(payload, 4);
  return b;
}

export function decodeControlBody(body: Buffer): ControlFrame {
  if (body.length < 4) throw new Error('fstrm: short control frame');
  const type = body.readUInt32BE(0);
  const contentTypes: string[] = [];
  let off = 4;
  while (off + 8 <= body.length) {
    const ft = body.readUInt32BE(off);
    const fl = body.readUInt32BE(off + 4);
    off += 8;
    if (off + fl > body.length) throw new Error('fstrm: truncated control field');
    if (ft === FSTRM_FIELD_CONTENT_TYPE) contentTypes.push(body.subarray(off, off + fl).toString('utf8'));
    off += fl;
  }
  return { type, contentTypes };
}

export type Frame = { control: ControlFrame } | { data: Buffer };

/** Incremental decoder for a byte stream of frames (used by the writer for ACCEPT/FINISH, and by tests as a reader). */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Frame[] = [];
    for (;;) {
      if (this.buf.length < 4) break;
      const len = this.buf.readUInt32BE(0);
      if (len === 0) {
        if (this.buf.length < 8) break;
        const clen = this.buf.readUInt32BE(4);
        if (clen > FSTRM_MAX_CONTROL_LEN) throw new Error(`fstrm: control frame too large (${clen})`);
        if (this.buf.length < 8 + clen) break;
        out.push({ control: decodeControlBody(this.buf.subarray(8, 8 + clen)) });
        this.buf = this.buf.subarray(8 + clen);
      } else {
        if (this.buf.length < 4 + len) break;
        out.push({ data: this.buf.subarray(4, 4 + len) });
        this.buf = this.buf.subarray(4 + len);
      }
    }
    return out;
  }
}
