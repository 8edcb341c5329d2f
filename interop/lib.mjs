// Shared helpers for the interop scripts: assertions with deadlines, and a way to read the
// demo server's liveStreams through an independent graphql-ws client.
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';

export const DEADLINE_MS = 10_000;

export function check(cond, what) {
  if (!cond) {
    throw new Error(`check failed: ${what}`);
  }
  console.log(`  ok: ${what}`);
}

export function withDeadline(promise, what, ms = DEADLINE_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Subscribes through a graphql-ws or graphql-sse client (the same sink API); `done`
 * resolves with the results on `complete`, or once `limit` arrived.
 */
export function collect(client, payload, limit) {
  const items = [];
  let dispose;
  const done = new Promise((resolve, reject) => {
    dispose = client.subscribe(payload, {
      next: (r) => {
        items.push(r);
        if (limit && items.length === limit) resolve(items);
      },
      error: reject,
      complete: () => resolve(items),
    });
  });
  return { done, dispose: () => dispose() };
}

/** Debian's headless Chromium (or $CHROMIUM), with nothing that phones home. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Runs one query over a fresh graphql-ws client and returns its data. */
export async function query(url, q, connectionParams) {
  const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams });
  try {
    return await withDeadline(new Promise((resolve, reject) => {
      let data;
      client.subscribe({ query: q }, {
        next: (r) => { data = r.data; },
        error: reject,
        complete: () => resolve(data),
      });
    }), `query ${q}`);
  } finally {
    await client.dispose();
  }
}

/** Waits until the server's liveStreams equals `n`. */
export async function waitLiveStreams(url, n, connectionParams) {
  const end = Date.now() + DEADLINE_MS;
  let last;
  while (Date.now() < end) {
    last = (await query(url, '{ liveStreams }', connectionParams)).liveStreams;
    if (last === n) {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`liveStreams stayed at ${last}, expected ${n}`);
}

export async function main(name, body) {
  const url = process.argv[2];
  if (!url) {
    console.error(`usage: node ${name} ws://HOST:PORT/graphql`);
    process.exit(2);
  }
  try {
    await body(url);
    console.log(`${name}: passed`);
    process.exit(0);
  } catch (err) {
    console.error(`${name}: FAILED: ${err.stack ?? err}`);
    process.exit(1);
  }
}
