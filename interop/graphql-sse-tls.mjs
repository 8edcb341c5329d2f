// npm `graphql-sse` (createClient, on Node's fetch) over https://, in both of its modes:
// distinct connections and single connection. The certificate is self-signed and trusted
// through NODE_EXTRA_CA_CERTS (xtask sets it), so fetch verifies it as it would a real one.
// Then the same GET stream through Node's own HTTP/2 client, which ALPN must put on h2.
// Server expectations: started with `--auth-token interop --tls-cert ... --tls-key ...`.
import http2 from 'node:http2';
import { createClient } from 'graphql-sse';
import { check, collect, main, query, waitLiveStreams, withDeadline } from './lib.mjs';

const params = { token: 'interop' };
setTimeout(() => { console.error('graphql-sse-tls.mjs: FAILED: global timeout (30 s)'); process.exit(1); }, 30_000).unref();

async function mode(wss, https, singleConnection) {
  const label = singleConnection ? 'single connection' : 'distinct connections';
  const client = createClient({
    url: https,
    singleConnection,
    retryAttempts: 0,
    headers: { authorization: 'Bearer interop' },
  });
  const ticks = await withDeadline(
    collect(client, { query: 'subscription { ticks(everyMs: 20, count: 3) }' }).done,
    `${label}: ticks`,
  );
  check(JSON.stringify(ticks.map((r) => r.data.ticks)) === '[0,1,2]', `${label}: subscription over https:// delivers 0,1,2 then completes`);

  const hello = await withDeadline(collect(client, { query: '{ hello }' }).done, `${label}: query`);
  check(hello.length === 1 && hello[0].data.hello === 'world', `${label}: query over https:// is one result then complete`);

  // Two live subscriptions fed by a mutation.
  const topic = `interop-sse-tls-${singleConnection}`;
  const a = collect(client, { query: `subscription { messages(topic: "${topic}") }` }, 1);
  const b = collect(client, { query: `subscription { messages(topic: "${topic}") }` }, 1);
  await waitLiveStreams(wss, 2, params);
  const published = await withDeadline(
    collect(client, { query: `mutation { publish(topic: "${topic}", message: "hi") }` }).done,
    `${label}: mutation`,
  );
  check(published[0].data.publish === 2, `${label}: the mutation reaches both subscribers`);
  const [ga, gb] = await withDeadline(Promise.all([a.done, b.done]), `${label}: messages`);
  check(ga[0].data.messages === 'hi' && gb[0].data.messages === 'hi', `${label}: both receive the published message`);
  a.dispose();
  b.dispose();
  await waitLiveStreams(wss, 0, params);
  check(true, `${label}: disposing them frees their server-side streams`);
  client.dispose();
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

await main('graphql-sse-tls.mjs', async (wss) => {
  check(wss.startsWith('wss://'), `the server listens with TLS (${wss})`);
  const https = wss.replace(/^wss/, 'https');
  const baseline = (await query(wss, '{ liveStreams }', params)).liveStreams;
  check(baseline === 0, 'no stream is live at the start');
  await mode(wss, https, false);
  await mode(wss, https, true);

  const h2 = await overH2(https);
  check(h2.alpn === 'h2', `Node's HTTP/2 client negotiated ALPN ${h2.alpn}`);
  check(h2.status === 200, `the GET stream over h2 answered ${h2.status}`);
  const ticks = [...h2.text.matchAll(/^event: next\ndata: (.*)$/gm)].map((m) => JSON.parse(m[1]).data.ticks);
  check(JSON.stringify(ticks) === '[0,1,2]', `the stream over h2 delivers 0,1,2 (${ticks})`);
  check(/^event: complete$/m.test(h2.text), 'then an event: complete, and the h2 stream ends');
});
