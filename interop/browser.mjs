// A real browser: headless Chromium (Debian's) opens a page whose bundled graphql-ws client
// subscribes through the browser's own WebSocket; events must arrive, and closing the tab
// must free the server-side subscription. Everything is served on loopback.
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import esbuild from 'esbuild';
import { check, launchChromium, main, query, waitLiveStreams } from './lib.mjs';

const params = { token: 'interop' };

await main('browser.mjs', async (url) => {
  const bundle = await esbuild.build({
    entryPoints: [new URL('./browser/app.js', import.meta.url).pathname],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
  });
  const js = bundle.outputFiles[0].text;
  const html = await readFile(new URL('./browser/index.html', import.meta.url));
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/app.js')) {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const page_url = `http://127.0.0.1:${server.address().port}/?ws=${encodeURIComponent(url)}`;

  const baseline = (await query(url, '{ liveStreams }', params)).liveStreams;
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(page_url);
    await page.waitForFunction(() => window.events.length >= 3 || window.failure, null, { timeout: 10_000 });
    const failure = await page.evaluate(() => window.failure);
    check(failure === null, `no client error (${failure})`);
    const events = await page.evaluate(() => window.events.slice(0, 3));
    check(JSON.stringify(events) === '[0,1,2]', 'events arrive in the browser: 0,1,2');
    await waitLiveStreams(url, baseline + 1, params);
    check(true, 'the server holds the tab\'s subscription');
    await page.close();
    await waitLiveStreams(url, baseline, params);
    check(true, 'closing the tab frees the server-side subscription');
  } finally {
    await browser.close();
    server.close();
  }
});
