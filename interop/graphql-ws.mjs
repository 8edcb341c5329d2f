// npm `graphql-ws` (createClient + ws) against subscope on `graphql-transport-ws`.
// Over TLS (xtask's `{tls}`: it sets SUBSCOPE_TLS_CERT, and NODE_EXTRA_CA_CERTS so Node
// verifies the self-signed certificate's chain and name as it would a real one) the same
// runs over wss://, and every socket under the client is checked to be TLS.
// Server expectations: started with `--auth-token interop --keepalive-ms 300` (and
// `--tls-cert/--tls-key`).
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { check, collect, main, query, waitLiveStreams, withDeadline } from './lib.mjs';

const params = { token: 'interop' };
const tls = process.env.SUBSCOPE_TLS_CERT !== undefined;

/** What the socket under each of the client's WebSockets negotiated (read at the
 * upgrade: the lazy client closes the socket when its last operation ends). */
const sessions = [];
class Recording extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('upgrade', ({ socket }) => sessions.push({
      encrypted: socket.encrypted === true,
      version: socket.getProtocol?.(),
      authorized: socket.authorized,
      alpn: socket.alpnProtocol,
      san: socket.getPeerCertificate?.()?.subjectaltname,
    }));
  }
}

await main('graphql-ws.mjs', async (url) => {
  if (tls) {
    check(url.startsWith('wss://'), `the server listens on wss:// (${url})`);
  }
  let pongs = 0;
  const client = createClient({
    url,
    webSocketImpl: Recording,
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
  if (tls) {
    check(sessions.length > 0 && sessions.every((s) => s.encrypted), `every WebSocket ran over TLS (${sessions.map((s) => s.version)})`);
    check(sessions.every((s) => s.authorized === true), 'Node verified the server certificate (no rejectUnauthorized: false)');
    check(/IP Address:127\.0\.0\.1/.test(sessions[0].san), `the certificate names 127.0.0.1 (${sessions[0].san})`);
    check(sessions.every((s) => s.alpn === false || s.alpn === 'http/1.1'), `the upgrades ran on HTTP/1.1 (ALPN ${sessions[0].alpn})`);
  } else {
    check(sessions.length > 0 && sessions.every((s) => !s.encrypted), 'every WebSocket ran in the clear');
  }

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
