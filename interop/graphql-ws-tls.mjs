// npm `graphql-ws` (createClient + ws) over wss://: the demo's TLS listener with a
// self-signed certificate that Node trusts through NODE_EXTRA_CA_CERTS (xtask sets it), so
// the client verifies the chain and the name like against a real certificate.
// Server expectations: started with `--auth-token interop --tls-cert ... --tls-key ...`.
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { check, collect, main, waitLiveStreams, withDeadline } from './lib.mjs';

const params = { token: 'interop' };
setTimeout(() => { console.error('graphql-ws-tls.mjs: FAILED: global timeout (30 s)'); process.exit(1); }, 30_000).unref();

await main('graphql-ws-tls.mjs', async (url) => {
  check(url.startsWith('wss://'), `the server listens on wss:// (${url})`);

  // What the TLS socket under each of the client's WebSockets negotiated (read at the
  // upgrade: the lazy client closes the socket when its last operation ends).
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
  const client = createClient({ url, webSocketImpl: Recording, connectionParams: params, retryAttempts: 0 });

  const ticks = await withDeadline(
    collect(client, { query: 'subscription { ticks(everyMs: 20, count: 3) }' }).done,
    'ticks',
  );
  check(JSON.stringify(ticks.map((r) => r.data.ticks)) === '[0,1,2]', 'subscription over wss:// delivers 0,1,2 then completes');

  const hello = await withDeadline(collect(client, { query: '{ hello }' }).done, 'query');
  check(hello.length === 1 && hello[0].data.hello === 'world', 'query over wss://: one result then complete');

  // A live subscription fed by a mutation on the same TLS connection.
  const messages = collect(client, { query: 'subscription { messages(topic: "interop-tls") }' }, 1);
  await waitLiveStreams(url, 1, params);
  const published = await withDeadline(
    collect(client, { query: 'mutation { publish(topic: "interop-tls", message: "secret") }' }).done,
    'mutation',
  );
  check(published[0].data.publish === 1, 'mutation over wss:// reaches the subscriber');
  const got = await withDeadline(messages.done, 'message');
  check(got[0].data.messages === 'secret', 'subscriber receives the published message over wss://');
  messages.dispose();
  await waitLiveStreams(url, 0, params);

  check(sessions.length > 0 && sessions.every((s) => s.encrypted), `every WebSocket ran over TLS (${sessions.map((s) => s.version)})`);
  check(sessions.every((s) => s.authorized === true), 'Node verified the server certificate (no rejectUnauthorized: false)');
  check(/IP Address:127\.0\.0\.1/.test(sessions[0].san), `the certificate names 127.0.0.1 (${sessions[0].san})`);
  check(sessions.every((s) => s.alpn === false || s.alpn === 'http/1.1'), `the upgrades ran on HTTP/1.1 (ALPN ${sessions[0].alpn})`);
  await client.dispose();
});
