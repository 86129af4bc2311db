// Small helpers shared by the native addon tests.
import dgram from 'node:dgram';
import fs from 'node:fs';
import { once } from 'node:events';

export function openFdCount() {
  return fs.readdirSync('/proc/self/fd').length;
}

export function rssBytes() {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : process.memoryUsage().rss;
}

/** Resolves after `predicate()` holds, polling every 5 ms; rejects after `timeoutMs`. */
export async function waitFor(predicate, timeoutMs = 3000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A bound dgram client that records every message it gets. */
export async function udpClient(type) {
  const socket = dgram.createSocket(type);
  const messages = [];
  socket.on('message', (message, remote) => messages.push({ message, remote }));
  socket.bind(0, type === 'udp6' ? '::1' : '127.0.0.1');
  await once(socket, 'listening');
  return { socket, messages };
}
