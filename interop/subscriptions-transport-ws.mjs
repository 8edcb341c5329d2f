// npm `subscriptions-transport-ws` SubscriptionClient against subscope on legacy `graphql-ws`.
// Server expectations: started with `--auth-token interop --keepalive-ms 300`.
import WebSocket from 'ws';
import pkg from 'subscriptions-transport-ws';
import { check, main, waitLiveStreams, withDeadline } from './lib.mjs';

const { SubscriptionClient } = pkg;
const params = { token: 'interop' };

await main('subscriptions-transport-ws.mjs', async (url) => {
  let disconnected = 0;
  // `timeout` is the client's keep-alive timeout (30 s by default): without `ka` messages
  // arriving more often than that, it drops the connection.
  const client = new SubscriptionClient(url, { reconnect: false, timeout: 1000, connectionParams: params }, WebSocket);
  client.onDisconnected(() => { disconnected += 1; });

  const collect = (query, limit) => {
    const items = [];
    let sub;
    const done = new Promise((resolve, reject) => {
      sub = client.request({ query }).subscribe({
        next: (r) => {
          items.push(r);
          if (limit && items.length === limit) resolve(items);
        },
        error: reject,
        complete: () => resolve(items),
      });
    });
    return { done, unsubscribe: () => sub.unsubscribe() };
  };

  const ticks = await withDeadline(collect('subscription { ticks(everyMs: 20, count: 3) }').done, 'ticks');
  check(JSON.stringify(ticks.map((r) => r.data.ticks)) === '[0,1,2]', 'subscription delivers 0,1,2 then completes');

  const hello = await withDeadline(collect('{ hello }').done, 'query');
  check(hello[0].data.hello === 'world', 'query: one data then complete');

  const live = collect('subscription { ticks(everyMs: 50) }', 2);
  await withDeadline(live.done, 'two ticks');
  await waitLiveStreams(url, 1, params);
  live.unsubscribe(); // sends `stop`; the server answers `complete`
  await waitLiveStreams(url, 0, params);
  check(true, 'unsubscribe (stop) frees the server-side stream');

  // Stay idle for three times the client's timeout: only `ka` keeps it alive.
  await new Promise((r) => setTimeout(r, 3000));
  check(disconnected === 0, 'ka keeps the client connected past its 1 s timeout');
  const after = await withDeadline(collect('{ hello }').done, 'query after idling');
  check(after[0].data.hello === 'world', 'connection still usable after idling');
  client.close();
});
