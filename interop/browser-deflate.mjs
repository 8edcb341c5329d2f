// Headless Chromium's own WebSocket (which offers permessage-deflate on every connection)
// against the demo started with --deflate: the extension is agreed and events arrive
// compressed, per the server's counters for exactly the page's connection.
import http from 'node:http';
import { check, launchChromium, main } from './lib.mjs';

const EVENTS = 30;

// The page: a bare graphql-transport-ws client on the browser's WebSocket.
const PAGE = `<!doctype html><meta charset="utf-8"><title>deflate</title><script>
const url = new URLSearchParams(location.search).get('ws');
window.result = null;
const ws = new WebSocket(url, 'graphql-transport-ws');
const events = [];
let stats = [];
const STATS = '{ serverStats { deflateConnectionsTotal deflatePayloadBytesTotal deflateWireBytesTotal } }';
ws.onopen = () => ws.send(JSON.stringify({ type: 'connection_init', payload: { token: 'interop' } }));
ws.onerror = () => { window.result = { failure: 'socket error' }; };
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === 'connection_ack') {
    ws.send(JSON.stringify({ id: 's0', type: 'subscribe', payload: { query: STATS } }));
  } else if (m.type === 'next' && m.id.startsWith('s')) {
    stats.push(m.payload.data.serverStats);
    if (m.id === 's0') {
      ws.send(JSON.stringify({ id: 'p', type: 'subscribe', payload: { query: 'subscription { payload(bytes: 2000, everyMs: 5) }' } }));
    } else {
      window.result = { extensions: ws.extensions, events, stats };
    }
  } else if (m.type === 'next' && m.id === 'p') {
    // Events already on the way when we complete are not counted.
    if (events.length === ${EVENTS}) return;
    events.push(m.payload.data.payload.length);
    if (events.length === ${EVENTS}) {
      ws.send(JSON.stringify({ id: 'p', type: 'complete' }));
      ws.send(JSON.stringify({ id: 's1', type: 'subscribe', payload: { query: STATS } }));
    }
  } else if (m.type === 'error') {
    window.result = { failure: JSON.stringify(m.payload) };
  }
};
</script>`;

await main('browser-deflate.mjs', async (url) => {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const pageUrl = `http://127.0.0.1:${server.address().port}/?ws=${encodeURIComponent(url)}`;
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.result !== null, null, { timeout: 10_000 });
    const r = await page.evaluate(() => window.result);
    check(!r.failure, `no client error (${r.failure})`);
    check(r.extensions.startsWith('permessage-deflate'), `Chromium agreed on permessage-deflate (${r.extensions})`);
    check(r.events.length === EVENTS && r.events.every((n) => n === 2000), `${EVENTS} events of 2,000 bytes`);
    const [before, after] = r.stats;
    const payload = after.deflatePayloadBytesTotal - before.deflatePayloadBytesTotal;
    const wire = after.deflateWireBytesTotal - before.deflateWireBytesTotal;
    check(after.deflateConnectionsTotal >= 1, 'the server counts the connection as compressed');
    check(payload >= EVENTS * 2000 && wire * 5 < payload, `the server compressed ${payload} bytes into ${wire} for the page`);
  } finally {
    await browser.close();
    server.close();
  }
});
