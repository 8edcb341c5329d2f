// A real browser's EventSources over HTTP/2: headless Chromium, on a page of the demo's own
// https:// origin, opens EIGHT EventSources at once (graphql-sse's GET form). Over
// HTTP/1.1 a browser holds at most six connections per host, so the seventh and eighth
// would wait for one to end; over h2 all eight are streams of one connection. The server
// must hold all eight at once, each must receive its own event, and closing them must
// free the server-side subscriptions (RST_STREAM). As a control, the same page with
// Chromium's HTTP/2 turned off gets only six.
// Server expectations: started with `--auth-token interop --tls-cert ... --tls-key ...`
// (self-signed: the browser context ignores certificate errors; the Node side trusts it
// through NODE_EXTRA_CA_CERTS).
import { check, main, query, waitLiveStreams } from './lib.mjs';

const params = { token: 'interop' };
const SOURCES = 8;
setTimeout(() => { console.error('browser-sse-h2.mjs: FAILED: global timeout (30 s)'); process.exit(1); }, 30_000).unref();

/** Launches Chromium like lib.mjs's launchChromium, with extra flags. */
async function chromium(extra = []) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...extra,
    ],
  });
}

/** In the page: opens `n` EventSources on this origin, source i on topic `${prefix}-i`. */
function openSources({ n, prefix }) {
  window.sources = [];
  window.received = Array.from({ length: n }, () => []);
  window.failures = [];
  for (let i = 0; i < n; i++) {
    const url = new URL('/graphql', location.origin);
    url.searchParams.set('query', `subscription { messages(topic: "${prefix}-${i}") }`);
    // EventSource cannot send headers: the token goes in RFC 6750's access_token parameter.
    url.searchParams.set('access_token', 'interop');
    const source = new EventSource(url);
    source.addEventListener('next', (e) => window.received[i].push(JSON.parse(e.data).data.messages));
    source.addEventListener('error', () => window.failures.push(i));
    window.sources.push(source);
  }
}

/** Opens a page on the demo's origin (`/healthz`), so the EventSources are same-origin. */
async function demoPage(browser, origin) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const response = await page.goto(`${origin}/healthz`);
  check(response.ok(), `the browser opened ${origin}/healthz over TLS despite the self-signed certificate`);
  return page;
}

await main('browser-sse-h2.mjs', async (wss) => {
  check(wss.startsWith('wss://'), `the server listens with TLS (${wss})`);
  const origin = new URL(wss.replace(/^wss/, 'https')).origin;
  const baseline = (await query(wss, '{ liveStreams }', params)).liveStreams;

  const browser = await chromium();
  try {
    const page = await demoPage(browser, origin);
    const navigation = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    check(navigation === 'h2', `the page itself came over ${navigation}`);

    await page.evaluate(openSources, { n: SOURCES, prefix: 'h2' });
    await waitLiveStreams(wss, baseline + SOURCES, params);
    check(true, `the server holds all ${SOURCES} of the page's EventSources at once`);
    await page.waitForFunction(() => window.sources.every((s) => s.readyState === EventSource.OPEN), null, { timeout: 5_000 }).catch(() => {});
    const open = await page.evaluate(() => window.sources.filter((s) => s.readyState === EventSource.OPEN).length);
    check(open === SOURCES, `all ${SOURCES} EventSources are OPEN in the browser (${open})`);

    // A resource fetched beside the streams: it shares their connection, and says which.
    const fetched = await page.evaluate(async () => {
      await (await fetch('/healthz?beside-the-streams')).text();
      // The timing entry is queued once the body is done.
      for (let tries = 0; tries < 50; tries++) {
        const entry = performance.getEntriesByName(new URL('/healthz?beside-the-streams', location.origin).href)[0];
        if (entry) return entry.nextHopProtocol;
        await new Promise((r) => setTimeout(r, 20));
      }
      return 'no timing entry';
    });
    check(fetched === 'h2', `a fetch beside the ${SOURCES} open streams went over ${fetched}`);

    const reached = [];
    for (let i = 0; i < SOURCES; i++) {
      reached.push((await query(wss, `mutation { publish(topic: "h2-${i}", message: "m${i}") }`, params)).publish);
    }
    check(reached.every((n) => n === 1), `each of the ${SOURCES} topics has its one subscriber (publish: ${reached})`);
    await page.waitForFunction((n) => window.received.every((r) => r.length > 0) || window.failures.length, SOURCES, { timeout: 10_000 });
    const { received, failures } = await page.evaluate(() => ({ received: window.received, failures: window.failures }));
    check(failures.length === 0, `no EventSource error (${failures})`);
    check(received.every((r, i) => JSON.stringify(r) === `["m${i}"]`), `each of the ${SOURCES} EventSources received its own event`);

    // Closing four sends RST_STREAM on their streams only; closing the tab ends the rest.
    await page.evaluate(() => window.sources.slice(0, 4).forEach((s) => s.close()));
    await waitLiveStreams(wss, baseline + SOURCES - 4, params);
    check(true, 'closing four EventSources frees exactly their four server-side subscriptions');
    await page.close();
    await waitLiveStreams(wss, baseline, params);
    check(true, 'closing the tab frees the other four');
  } finally {
    await browser.close();
  }

  // The control: HTTP/1.1 only. Chromium opens six connections to the origin and holds
  // the other two EventSources back.
  const h1 = await chromium(['--disable-http2']);
  try {
    const page = await demoPage(h1, origin);
    const navigation = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    check(navigation === 'http/1.1', `control: with --disable-http2 the page came over ${navigation}`);
    await page.evaluate(openSources, { n: SOURCES, prefix: 'h1' });
    await waitLiveStreams(wss, baseline + 6, params);
    await new Promise((r) => setTimeout(r, 1000));
    const live = (await query(wss, '{ liveStreams }', params)).liveStreams - baseline;
    const open = await page.evaluate(() => window.sources.filter((s) => s.readyState === EventSource.OPEN).length);
    check(live === 6 && open === 6, `control: over HTTP/1.1 only 6 of ${SOURCES} get through (server ${live}, browser ${open} open)`);
    await page.close();
    await waitLiveStreams(wss, baseline, params);
  } finally {
    await h1.close();
  }
});
