// npm `graphql-sse` (createClient) against subscope's SSE transport, in both of its modes:
// distinct connections (one HTTP stream per operation) and single connection (one
// reserved stream, operations POSTed to it).
// Over TLS (xtask's `{tls}`: it sets SUBSCOPE_TLS_CERT, and NODE_EXTRA_CA_CERTS so fetch
// verifies the self-signed certificate as it would a real one) the same runs over
// https://, then the same GET stream through Node's own HTTP/2 client, which ALPN must put
// on h2.
// Server expectations: started with `--auth-token interop` (and `--tls-cert/--tls-key`).
import http2 from 'node:http2';
import { createClient } from 'graphql-sse';
import { check, collect, main, query, waitLiveStreams, withDeadline } from './lib.mjs';

const params = { token: 'interop' };
const tls = process.env.SUBSCOPE_TLS_CERT !== undefined;

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

/** graphql-sse's distinct-connections GET over Node's HTTP/2 client; returns the events. */
async function overH2(https) {
  const url = new URL(https);
  url.searchParams.set('query', 'subscription { ticks(everyMs: 20, count: 3) }');
  const session = http2.connect(url.origin);
  try {
    const alpn = await withDeadline(new Promise((resolve, reject) => {
      session.once('connect', () => resolve(session.alpnProtocol));
      session.once('error', reject);
    }), 'h2 connect');
    const body = await withDeadline(new Promise((resolve, reject) => {
      const stream = session.request({
        ':method': 'GET',
        ':path': url.pathname + url.search,
        accept: 'text/event-stream',
        authorization: 'Bearer interop',
      });
      let status;
      let text = '';
      stream.setEncoding('utf8');
      stream.on('response', (headers) => { status = headers[':status']; });
      stream.on('data', (chunk) => { text += chunk; });
      stream.on('end', () => resolve({ status, text }));
      stream.on('error', reject);
    }), 'h2 stream');
    return { alpn, ...body };
  } finally {
    session.close();
  }
}

await main('graphql-sse.mjs', async (ws) => {
  if (tls) {
    check(ws.startsWith('wss://'), `the server listens with TLS (${ws})`);
  }
  const http = ws.replace(/^ws/, 'http');
  const baseline = (await query(ws, '{ liveStreams }', params)).liveStreams;
  check(baseline === 0, 'no stream is live at the start');
  await mode(ws, http, false);
  await mode(ws, http, true);
  if (tls) {
    const h2 = await overH2(http);
    check(h2.alpn === 'h2', `Node's HTTP/2 client negotiated ALPN ${h2.alpn}`);
    check(h2.status === 200, `the GET stream over h2 answered ${h2.status}`);
    const ticks = [...h2.text.matchAll(/^event: next\ndata: (.*)$/gm)].map((m) => JSON.parse(m[1]).data.ticks);
    check(JSON.stringify(ticks) === '[0,1,2]', `the stream over h2 delivers 0,1,2 (${ticks})`);
    check(/^event: complete$/m.test(h2.text), 'then an event: complete, and the h2 stream ends');
  }
});
