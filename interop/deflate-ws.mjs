// Node's `ws` with perMessageDeflate against the demo started with --deflate: the
// extension is agreed, events arrive compressed (the socket reads a fraction of the bytes
// the messages hold, and the server's own counters agree), and inflate to the events.
import WebSocket from 'ws';
import { check, main, withDeadline } from './lib.mjs';

const EVENTS = 30;

/** Opens a graphql-transport-ws connection, acknowledged; resolves with the socket. */
function open(url) {
  const ws = new WebSocket(url, 'graphql-transport-ws', { perMessageDeflate: true });
  return withDeadline(new Promise((resolve, reject) => {
    ws.once('error', reject);
    ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { token: 'interop' } })));
    ws.once('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'connection_ack') resolve(ws);
      else reject(new Error(`expected connection_ack, got ${data}`));
    });
  }), 'connection_ack');
}

/** Runs `query` as operation `id` on `ws`; resolves with its `next` payloads once `n` arrived or it completed. */
function run(ws, id, query, n) {
  return withDeadline(new Promise((resolve, reject) => {
    const got = [];
    const onMessage = (data) => {
      const m = JSON.parse(data);
      if (m.id !== id) return;
      if (m.type === 'next') got.push(m.payload);
      if (m.type === 'error') reject(new Error(JSON.stringify(m.payload)));
      if (m.type === 'complete' || got.length === n) {
        ws.off('message', onMessage);
        resolve(got);
      }
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query } }));
  }), `operation ${id}`);
}

const STATS = '{ serverStats { deflateConnectionsTotal deflatePayloadBytesTotal deflateWireBytesTotal } }';

await main('deflate-ws.mjs', async (url) => {
  const ws = await open(url);
  check(ws.extensions.startsWith('permessage-deflate'), `permessage-deflate agreed (${ws.extensions})`);
  const before = (await run(ws, 's0', STATS, 1))[0].data.serverStats;
  const readBefore = ws._socket.bytesRead;
  const events = await run(ws, 'p', 'subscription { payload(bytes: 2000, everyMs: 5) }', EVENTS);
  const read = ws._socket.bytesRead - readBefore;
  const text = events.reduce((sum, e) => sum + JSON.stringify(e).length, 0);
  check(events.length === EVENTS && events.every((e) => e.data.payload.length === 2000), `${EVENTS} events of 2,000 bytes`);
  check(read * 5 < text, `compressed on the wire: ${read} bytes read for ${text} bytes of events`);
  ws.send(JSON.stringify({ id: 'p', type: 'complete' }));
  const after = (await run(ws, 's1', STATS, 1))[0].data.serverStats;
  const payload = after.deflatePayloadBytesTotal - before.deflatePayloadBytesTotal;
  const wire = after.deflateWireBytesTotal - before.deflateWireBytesTotal;
  check(after.deflateConnectionsTotal >= 1, 'the server counts the connection as compressed');
  check(payload >= text && wire * 5 < payload, `the server compressed ${payload} bytes into ${wire}`);
  ws.close(1000);
});
