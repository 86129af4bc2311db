// `dns-tproxy passwd`: reads a password on stdin (without echo on a terminal) and prints its salted
// scrypt hash for console.users[].password.
import { hashPassword } from './auth.js';

const MAX_INPUT = 4096;

export async function passwdCommand(stdin: NodeJS.ReadStream = process.stdin, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const password = stdin.isTTY ? await readHidden(stdin, err) : await readAll(stdin);
  if (password === null) { err.write('passwd: input longer than 4096 bytes\n'); return 2; }
  if (password.length === 0) { err.write('passwd: empty password (give it on stdin: echo -n SECRET | dns-tproxy passwd)\n'); return 2; }
  out.write(`${await hashPassword(password)}\n`);
  return 0;
}

/** Everything on stdin, less one trailing newline (echo adds it). */
async function readAll(stdin: NodeJS.ReadStream): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stdin as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_INPUT) return null;
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

function readHidden(stdin: NodeJS.ReadStream, err: NodeJS.WritableStream): Promise<string | null> {
  err.write('password: ');
  stdin.setRawMode(true);
  stdin.resume();
  let text = '';
  return new Promise((resolve) => {
    const done = (v: string | null) => { stdin.setRawMode(false); stdin.pause(); stdin.off('data', onData); err.write('\n'); resolve(v); };
    const onData = (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') { done(text); return; }
        if (ch === '\u0003') { done(''); return; }
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
        if (text.length > MAX_INPUT) { done(null); return; }
      }
    };
    stdin.on('data', onData);
  });
}
