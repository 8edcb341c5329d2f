// GraphiQL, the page the server itself serves on `GET /graphql` to a browser: headless
// Chromium opens it, GraphiQL loads (its pinned unpkg.com assets are answered from the
// same pinned npm packages in node_modules: this machine has no internet), introspects the
// schema, and a subscription typed into the editor runs over graphql-ws on the browser's
// WebSocket until it completes. Saves a screenshot when SUBSCOPE_GRAPHIQL_SCREENSHOT names
// a file.
// Server expectations: started with `--auth-token interop` (the page passes the token it
// was opened with, `?access_token=interop`, to its HTTP and WebSocket requests).
import { readFile } from 'node:fs/promises';
import { check, launchChromium, main, waitLiveStreams } from './lib.mjs';

const params = { token: 'interop' };
const SUBSCRIPTION = 'subscription { ticks(everyMs: 100, count: 3) }';
setTimeout(() => { console.error('browser-graphiql.mjs: FAILED: global timeout (30 s)'); process.exit(1); }, 30_000).unref();

/**
 * Answers `https://unpkg.com/NAME@VERSION/PATH` from `node_modules`: from the installed
 * package of that exact version, `NAME` or its alias `NAME-MAJOR` (graphql-ws 5 beside the
 * 6 the other scripts use). A pin the page and package.json disagree on is a 404.
 */
async function unpkg(route, served) {
  const { pathname } = new URL(route.request().url());
  const [, name, version, file] = pathname.match(/^\/((?:@[^/]+\/)?[^@/]+)@([^/]+)\/(.+)$/) ?? [];
  for (const dir of [name, `${name}-${version?.split('.')[0]}`]) {
    const root = new URL(`./node_modules/${dir}/`, import.meta.url);
    const installed = await readFile(new URL('package.json', root)).then((b) => JSON.parse(b).version, () => null);
    if (installed === version) {
      const body = await readFile(new URL(file, root));
      served.push(pathname);
      const type = file.endsWith('.css') ? 'text/css' : 'text/javascript';
      // The page loads them with `crossorigin`: a CORS response, as unpkg.com sends.
      return route.fulfill({ body, contentType: type, headers: { 'access-control-allow-origin': '*' } });
    }
  }
  return route.fulfill({ status: 404, body: `not installed: ${pathname}` });
}

await main('browser-graphiql.mjs', async (ws) => {
  const endpoint = new URL(ws.replace(/^ws/, 'http'));
  endpoint.searchParams.set('access_token', 'interop');

  const browser = await launchChromium();
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 700 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    // The browser's WebSockets and the graphql-transport-ws messages they received.
    const sockets = [];
    const frames = [];
    page.on('websocket', (socket) => {
      sockets.push(socket.url());
      socket.on('framereceived', ({ payload }) => frames.push(JSON.parse(payload)));
    });
    const served = [];
    await page.route('https://unpkg.com/**', (route) => unpkg(route, served));

    const response = await page.goto(endpoint.href);
    check(response.ok() && response.headers()['content-type'].startsWith('text/html'), `GET ${endpoint.pathname} from a browser is the GraphiQL page (${response.headers()['content-type']})`);
    await page.waitForSelector('.graphiql-query-editor .CodeMirror', { timeout: 10_000 });
    check(served.length === 5, `GraphiQL, React, ReactDOM and graphql-ws loaded from their pinned versions (${served.join(', ')})`);

    // The schema's introspection (over HTTP) feeds the docs explorer.
    await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
    const roots = page.locator('.graphiql-doc-explorer-root-type');
    await roots.filter({ hasText: 'subscription' }).waitFor({ timeout: 10_000 });
    const types = (await roots.allInnerTexts()).join(', ');
    check(types === 'query, mutation, subscription', `the schema was introspected over HTTP: the docs list its root types (${types})`);
    await page.getByRole('button', { name: 'Hide Documentation Explorer' }).click();

    // Type the subscription as a user would: select all, then text (insertText types no
    // keystrokes, so the editor's bracket auto-closing leaves the text as it is).
    await page.click('.graphiql-query-editor .CodeMirror-code');
    await page.keyboard.press('Control+A');
    await page.keyboard.insertText(SUBSCRIPTION);
    const typed = await page.evaluate(() => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue());
    check(typed === SUBSCRIPTION, `the editor holds ${typed}`);

    // GraphiQL parses the editor 100 ms after the last change (then saves it in
    // localStorage); run before that and it still holds the old document, sees no
    // subscription and POSTs it over HTTP instead. A person is never that fast.
    await page.waitForFunction((q) => localStorage.getItem('graphiql:query') === q, SUBSCRIPTION, { timeout: 5_000 });
    await page.click('.graphiql-execute-button');
    const result = page.locator('.graphiql-response .CodeMirror');
    await result.getByText('"ticks": 2').waitFor({ timeout: 10_000 });
    check(true, 'the result pane shows "ticks": 2');
    await page.locator('.graphiql-execute-button[aria-label^="Execute"]').waitFor({ timeout: 10_000 });
    check(true, 'GraphiQL saw the subscription complete (the stop button is a run button again)');
    check(sockets.length === 1 && sockets[0].startsWith(ws), `the subscription ran over the browser's WebSocket (${sockets})`);
    // (Playwright reports frames on its own channel: give the last one a moment.)
    for (const end = Date.now() + 5_000; !frames.some((f) => f.type === 'complete') && Date.now() < end;) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const ticks = frames.filter((f) => f.type === 'next').map((f) => f.payload.data.ticks);
    check(JSON.stringify(ticks) === '[0,1,2]', `over graphql-transport-ws: next 0,1,2 (${ticks})`);
    check(frames.at(-1)?.type === 'complete', `then complete (${frames.map((f) => f.type)})`);
    await waitLiveStreams(ws, 0, params);
    check(true, 'no stream is left on the server');
    check(errors.length === 0, `no error in the page (${errors.join(' | ')})`);

    if (process.env.SUBSCOPE_GRAPHIQL_SCREENSHOT) {
      await page.screenshot({ path: process.env.SUBSCOPE_GRAPHIQL_SCREENSHOT });
      console.log(`  saved ${process.env.SUBSCOPE_GRAPHIQL_SCREENSHOT}`);
    }
  } finally {
    await browser.close();
  }
});
