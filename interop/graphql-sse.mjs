// npm `graphql-sse` (createClient) against subscope's SSE transport, in both of its modes:
// distinct connections (one HTTP stream per operation) and single connection (one
// reserved stream, operations POSTed to it).
// Server expectations: started with `--auth-token interop`.
import { createClient } from 'graphql-sse';
import { check, collect, main, query, waitLiveStreams, withDeadline } from './lib.mjs';

const params = { token: 'interop' };

async function mode(ws, http, singleConnection) {
  const label = singleConnection ? 'single connection' : 'distinct connections';
  const client = createClient({
    url: http,
    singleConnection,
    retryAttempts: 0,
    headers: { authorization: 'Bearer interop' },
  });
  const ticks = await withDeadline(
    collect(client, { query: 'subscription { ticks(everyMs: 20, count: 3) }' }).done,
    `${label}: ticks`,
  );
  check(JSON.stringify(ticks.map((r) => r.data.ticks)) === '[0,1,2]', `${label}: subscription delivers 0,1,2 then completes`);

  const hello = await withDeadline(collect(client, { query: '{ hello }' }).done, `${label}: query`);
  check(hello.length === 1 && hello[0].data.hello === 'world', `${label}: query is one result then complete`);

  // Two live subscriptions (one stream for both in single-connection mode), fed by a mutation.
  const topic = `interop-sse-${singleConnection}`;
  const a = collect(client, { query: `subscription { messages(topic: "${topic}") }` }, 1);
  const b = collect(client, { query: `subscription { messages(topic: "${topic}") }` }, 1);
  await waitLiveStreams(ws, 2, params);
  const published = await withDeadline(
    collect(client, { query: `mutation { publish(topic: "${topic}", message: "hi") }` }).done,
    `${label}: mutation`,
  );
  check(published[0].data.publish === 2, `${label}: the mutation reaches both subscribers`);
  const [ga, gb] = await withDeadline(Promise.all([a.done, b.done]), `${label}: messages`);
  check(ga[0].data.messages === 'hi' && gb[0].data.messages === 'hi', `${label}: both receive the published message`);
  a.dispose();
  await waitLiveStreams(ws, 1, params);
  check(true, `${label}: disposing one subscription frees its server-side stream only`);
  b.dispose();
  await waitLiveStreams(ws, 0, params);
  check(true, `${label}: disposing the other frees it too`);

  // Validation errors arrive as a result, and the operation completes.
  const bad = await withDeadline(collect(client, { query: 'subscription { nope }' }).done, `${label}: bad query`);
  check(bad.length === 1 && bad[0].errors?.length === 1 && bad[0].data === undefined, `${label}: a validation error is one result with errors`);
  client.dispose();

  // A wrong token is refused with 403 before any stream.
  const refused = createClient({
    url: http,
    singleConnection,
    retryAttempts: 0,
    headers: { authorization: 'Bearer wrong' },
  });
  const err = await withDeadline(collect(refused, { query: '{ hello }' }).done.then(() => null, (e) => e), `${label}: refusal`);
  const status = err?.response?.status ?? err?.status;
  check(err !== null && (status === 403 || /403/.test(String(err?.message ?? err))), `${label}: a wrong token is refused with 403 (${status ?? err})`);
  refused.dispose();
}

await main('graphql-sse.mjs', async (ws) => {
  const http = ws.replace(/^ws/, 'http');
  const baseline = (await query(ws, '{ liveStreams }', params)).liveStreams;
  check(baseline === 0, 'no stream is live at the start');
  await mode(ws, http, false);
  await mode(ws, http, true);
});
