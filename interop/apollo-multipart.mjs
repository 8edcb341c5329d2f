// `@apollo/client` under Node, subscribing over its HTTP link: Apollo's multipart
// subscription protocol (`Accept: multipart/mixed;subscriptionSpec="1.0"`), no WebSocket.
// Server expectations: started with `--auth-token interop`.
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { check, main, query, waitLiveStreams, withDeadline } from './lib.mjs';

const params = { token: 'interop' };

function collect(client, q, limit) {
  const items = [];
  let sub;
  const done = new Promise((resolve, reject) => {
    sub = client.subscribe({ query: gql(q) }).subscribe({
      next: (r) => {
        items.push(r);
        if (limit && items.length === limit) resolve(items);
      },
      error: reject,
      complete: () => resolve(items),
    });
  });
  return { done, dispose: () => sub.unsubscribe() };
}

await main('apollo-multipart.mjs', async (ws) => {
  const http = ws.replace(/^ws/, 'http');
  const client = new ApolloClient({
    link: new HttpLink({ uri: http, headers: { authorization: 'Bearer interop' } }),
    cache: new InMemoryCache(),
  });

  const ticks = await withDeadline(collect(client, 'subscription { ticks(everyMs: 20, count: 3) }').done, 'ticks');
  check(JSON.stringify(ticks.map((r) => r.data.ticks)) === '[0,1,2]', 'multipart subscription delivers 0,1,2 then completes');

  const hello = await withDeadline(client.query({ query: gql('{ hello }') }), 'query');
  check(hello.data.hello === 'world', 'a query over the same link and URL');

  const live = collect(client, 'subscription { messages(topic: "interop-apollo") }', 1);
  await waitLiveStreams(ws, 1, params);
  const published = await withDeadline(
    client.mutate({ mutation: gql('mutation { publish(topic: "interop-apollo", message: "hi") }') }),
    'mutation',
  );
  check(published.data.publish === 1, 'the mutation reaches the multipart subscriber');
  const got = await withDeadline(live.done, 'message');
  check(got[0].data.messages === 'hi', 'the subscriber receives the published message');
  live.dispose();
  await waitLiveStreams(ws, 0, params);
  check(true, 'unsubscribing aborts the request and frees the server-side stream');
  client.stop();
});
