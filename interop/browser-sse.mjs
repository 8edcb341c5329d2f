// A real browser's EventSource: headless Chromium opens a page (served from another
// loopback origin) that subscribes over graphql-sse's GET form; events must arrive, and
// closing the tab must free the server-side subscription.
import http from 'node:http';
import { check, launchChromium, main, query, waitLiveStreams } from './lib.mjs';

const params = { token: 'interop' };

const page = (endpoint) => `<!doctype html><meta charset="utf-8"><title>subscope SSE</title>
<p id="ticks">-</p>
<script>
  window.events = [];
  window.failure = null;
  const url = new URL(${JSON.stringify(endpoint)});
  url.searchParams.set('query', 'subscription { ticks(everyMs: 50) }');
  // EventSource cannot send headers: the token goes in RFC 6750's access_token parameter.
  url.searchParams.set('access_token', 'interop');
  const source = new EventSource(url);
  source.addEventListener('next', (e) => {
    const ticks = JSON.parse(e.data).data.ticks;
    window.events.push(ticks);
    document.getElementById('ticks').textContent = String(ticks);
  });
  source.addEventListener('error', () => { if (window.events.length === 0) window.failure = 'EventSource error'; });
</script>`;

await main('browser-sse.mjs', async (ws) => {
  const endpoint = ws.replace(/^ws/, 'http');
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(page(endpoint));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const baseline = (await query(ws, '{ liveStreams }', params)).liveStreams;
  const browser = await launchChromium();
  try {
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${server.address().port}/`);
    await tab.waitForFunction(() => window.events.length >= 3 || window.failure, null, { timeout: 10_000 });
    const failure = await tab.evaluate(() => window.failure);
    check(failure === null, `no EventSource error (${failure})`);
    const events = await tab.evaluate(() => window.events.slice(0, 3));
    check(JSON.stringify(events) === '[0,1,2]', 'events arrive in the browser over EventSource: 0,1,2');
    await waitLiveStreams(ws, baseline + 1, params);
    check(true, 'the server holds the tab\'s SSE subscription');
    await tab.close();
    await waitLiveStreams(ws, baseline, params);
    check(true, 'closing the tab frees the server-side subscription');
  } finally {
    await browser.close();
    server.close();
  }
});
