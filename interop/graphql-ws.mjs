// npm `graphql-ws` (createClient + ws) against subscope on `graphql-transport-ws`.
// Server expectations: started with `--auth-token interop --keepalive-ms 300`.
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { check, collect, main, query, waitLiveStreams, withDeadline } from './lib.mjs';

const params = { token: 'interop' };

await main('graphql-ws.mjs', async (url) => {
  let pongs = 0;
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: params,
    retryAttempts: 0,
    keepAlive: 200, // the client's own protocol pings
    on: { pong: () => { pongs += 1; } },
  });

  // Subscribe, receive, complete.
  const ticks = await withDeadline(
    collect(client, { query: 'subscription { ticks(everyMs: 20, count: 3) }' }).done,
    'ticks',
  );
  check(JSON.stringify(ticks.map((r) => r.data.ticks)) === '[0,1,2]', 'subscription delivers 0,1,2 then completes');

  // Query and mutation.
  const hello = await withDeadline(collect(client, { query: '{ hello }' }).done, 'query');
  check(hello.length === 1 && hello[0].data.hello === 'world', 'query: one result then complete');

  // A live subscription, fed by a mutation, then unsubscribed by the client.
  const messages = collect(client, { query: 'subscription { messages(topic: "interop-js") }' }, 1);
  await waitLiveStreams(url, 1, params);
  const published = await withDeadline(
    collect(client, { query: 'mutation { publish(topic: "interop-js", message: "hi") }' }).done,
    'mutation',
  );
  check(published[0].data.publish === 1, 'mutation reaches the one subscriber');
  const got = await withDeadline(messages.done, 'message');
  check(got[0].data.messages === 'hi', 'subscriber receives the published message');
  messages.dispose();
  await waitLiveStreams(url, 0, params);
  check(true, 'client complete frees the server-side stream');

  // The client's keep-alive pings are answered (the lazy client is connected only while
  // it has an operation, so keep one open).
  const idle = collect(client, { query: 'subscription { delayed(ms: 60000) }' });
  await withDeadline(new Promise((resolve) => {
    const t = setInterval(() => { if (pongs >= 3) { clearInterval(t); resolve(); } }, 50);
  }), 'three pongs');
  check(pongs >= 3, `keep-alive pings answered (${pongs} pongs)`);
  idle.dispose();
  await client.dispose();

  // A rejected on_connect surfaces as 4403.
  const code = await withDeadline(new Promise((resolve) => {
    const bad = createClient({
      url,
      webSocketImpl: WebSocket,
      connectionParams: { token: 'wrong' },
      retryAttempts: 0,
      on: { closed: (event) => resolve(event.code) },
    });
    bad.subscribe({ query: '{ hello }' }, { next() {}, error() {}, complete() {} });
  }), 'rejection');
  check(code === 4403, `rejected on_connect closes 4403 (got ${code})`);
  await query(url, '{ hello }', params);
});
