// A real browser resumes across a crash: headless Chromium's own EventSource (no resume
// code of ours: its reconnect after the stream's `retry:` and its `Last-Event-ID` header)
// on a demo process A behind Redis Streams (`--redis URL --history 1000`). A is SIGKILLed
// while publishes are in flight; more events are published through a second process B on
// the same Redis while A is down; A is started again on the same port. The page must end
// with exactly the stream's entries, each once, in order, with their ids.
//
// Run by `cargo xtask interop`, which starts redis-server and A and passes what this
// script needs to kill and restart A: SUBSCOPE_DEMO_PID, SUBSCOPE_DEMO (the binary),
// SUBSCOPE_DEMO_ARGS (its arguments, one a line) and SUBSCOPE_REDIS_URL.
import http from 'node:http';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { check, launchChromium, main, query, waitLiveStreams, withDeadline } from './lib.mjs';

const params = { token: 'interop' };
const TOPIC = 'b';

const page = (endpoint) => `<!doctype html><meta charset="utf-8"><title>subscope SSE resume</title>
<script>
  window.events = [];
  window.opens = 0;
  const url = new URL(${JSON.stringify(endpoint)} + '?query=subscription%7Bmessages(topic:%22${TOPIC}%22)%7D');
  // EventSource cannot send headers: the token goes in RFC 6750's access_token parameter.
  url.searchParams.set('access_token', 'interop');
  const source = new EventSource(url);
  source.addEventListener('open', () => { window.opens += 1; });
  source.addEventListener('next', (e) => {
    const result = JSON.parse(e.data);
    window.events.push({ id: e.lastEventId, value: result.data?.messages ?? null, errors: result.errors ?? null });
  });
</script>`;

function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this through \`cargo xtask interop\``);
  }
  return value;
}

/** The topic's stream as Redis holds it: [{id, value}], in order. */
function stream(redisUrl) {
  const out = execFileSync('redis-cli', ['-u', redisUrl, '--raw', 'XRANGE', `subscope:topic:${TOPIC}`, '-', '+'], { encoding: 'utf8' });
  const lines = out.split('\n');
  const entries = [];
  for (let i = 0; i + 2 < lines.length; i += 3) {
    if (lines[i + 1] !== 'p') {
      throw new Error(`unexpected XRANGE output: ${out}`);
    }
    entries.push({ id: lines[i], value: JSON.parse(lines[i + 2]) });
  }
  return entries;
}

/** Starts the demo with `args`; resolves with the process and its URL once it listens. */
function startDemo(program, args) {
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  return withDeadline(new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`demo exited (${code ?? signal}) before listening`)));
    createInterface({ input: child.stdout }).once('line', (line) => {
      const url = line.trim().replace(/^listening on /, '');
      if (url === line.trim()) {
        reject(new Error(`unexpected first line ${JSON.stringify(line)}`));
      }
      resolve({ child, url });
    });
  }), 'the demo starts');
}

/** A graphql-ws publisher on `ws`; `publish` resolves whether the publish was acknowledged. */
function publisher(ws) {
  const client = createClient({ url: ws, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams: params });
  const publish = (message) => new Promise((resolve) => {
    let ok = false;
    client.subscribe({ query: `mutation { publish(topic: "${TOPIC}", message: "${message}") }` }, {
      next: (r) => { ok = r.data?.publish === 1; },
      error: () => resolve(false),
      complete: () => resolve(ok),
    });
  });
  return { publish, dispose: () => client.dispose() };
}

async function stats(ws) {
  return (await query(ws, '{ serverStats { resumeGaps eventsReplayed } }', params)).serverStats;
}

await main('browser-sse-resume.mjs', async (ws) => {
  const redisUrl = env('SUBSCOPE_REDIS_URL');
  const pid = Number(env('SUBSCOPE_DEMO_PID'));
  const program = env('SUBSCOPE_DEMO');
  const args = env('SUBSCOPE_DEMO_ARGS').split('\n');
  const at = args.indexOf('--addr');
  check(at >= 0 && args.includes('--history') && args.includes('--redis'), 'A runs with --redis and --history');
  const endpoint = ws.replace(/^ws/, 'http');
  const messages = Array.from({ length: 80 }, (_, i) => `b${String(i).padStart(2, '0')}`);
  const acked = new Map();

  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(page(endpoint));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const children = [];
  const browser = await launchChromium();
  try {
    // B: another process on the same Redis, any port.
    const b = await startDemo(program, args.map((a, i) => (i === at + 1 ? '127.0.0.1:0' : a)));
    children.push(b.child);
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${server.address().port}/`);
    await waitLiveStreams(ws, 1, params);
    check(true, 'the tab\'s EventSource is subscribed on A');

    // On A, one at a time; then 40 at once, A SIGKILLed as the first is acknowledged.
    const onA = publisher(ws);
    for (const m of messages.slice(0, 20)) {
      acked.set(m, await onA.publish(m));
    }
    check(messages.slice(0, 20).every((m) => acked.get(m)), 'the first 20 publishes on A acknowledged');
    await tab.waitForFunction(() => window.events.length >= 10, null, { timeout: 10_000 });
    let killed;
    const inFlight = messages.slice(20, 60).map((m) => onA.publish(m).then((ok) => {
      acked.set(m, ok);
      if (killed === undefined) {
        process.kill(pid, 'SIGKILL');
        killed = [...acked.values()].filter(Boolean).length;
      }
    }));
    await withDeadline(Promise.all(inFlight), 'the publishes in flight end');
    onA.dispose();
    const seenBeforeKill = await tab.evaluate(() => window.events.length);
    const ackedInFlight = messages.slice(20, 60).filter((m) => acked.get(m)).length;
    console.log(`  A SIGKILLed after ${killed} acknowledged publishes; ${ackedInFlight} of the 40 in flight acknowledged; the tab had ${seenBeforeKill} events`);

    // While A is down: through B. The browser cannot have these but by resuming.
    const onB = publisher(b.url);
    for (const m of messages.slice(60, 70)) {
      acked.set(m, await onB.publish(m));
    }
    check(messages.slice(60, 70).every((m) => acked.get(m)), 'publishes through B while A is down acknowledged');

    // A again, on the same port and Redis; the browser comes back by itself.
    const restarted = await startDemo(program, args.map((a, i) => (i === at + 1 ? new URL(ws).host : a)));
    children.push(restarted.child);
    check(restarted.url === ws, `A restarted on the same port (${restarted.url})`);
    await waitLiveStreams(ws, 1, params);
    check(true, 'the browser reconnected to A by itself');
    await tab.waitForFunction((last) => window.events.some((e) => e.value === last), messages[69], { timeout: 10_000 });
    check(true, 'the tab got what was published while A was down');
    const replayed = (await stats(ws)).eventsReplayed;
    check(replayed >= 10, `A replayed what was published while it was down (${replayed} events)`);

    // Live again, on the restarted A.
    const onA2 = publisher(ws);
    for (const m of messages.slice(70)) {
      acked.set(m, await onA2.publish(m));
    }
    onA2.dispose();
    onB.dispose();
    check(messages.slice(70).every((m) => acked.get(m)), 'publishes on the restarted A acknowledged');

    const expected = stream(redisUrl);
    const values = expected.map((e) => e.value);
    check(messages.every((m) => values.filter((v) => v === m).length <= 1), 'each message stored at most once');
    check(messages.every((m) => !acked.get(m) || values.includes(m)), 'every acknowledged publish is in the stream');
    console.log(`  the stream holds ${expected.length} entries; ${[...acked.values()].filter(Boolean).length} publishes were acknowledged`);
    await tab.waitForFunction((n) => window.events.length >= n, expected.length, { timeout: 10_000 })
      .catch(() => {});
    await new Promise((r) => setTimeout(r, 300)); // anything extra (a duplicate) shows too
    const got = await tab.evaluate(() => window.events);
    const opens = await tab.evaluate(() => window.opens);
    check(got.every((e) => e.errors === null), `no error items (${JSON.stringify(got.find((e) => e.errors))})`);
    check(JSON.stringify(got) === JSON.stringify(expected.map((e) => ({ ...e, errors: null }))),
      `the page has the stream exactly once, in order, with its ids (${got.length} of ${expected.length}; `
      + `first difference at ${got.findIndex((e, i) => e.id !== expected[i]?.id || e.value !== expected[i]?.value)})`);
    check(opens >= 2, `the EventSource reconnected (${opens} opens)`);
    check((await stats(ws)).resumeGaps === 0, 'no RESUME_GAP');
  } finally {
    await browser.close();
    server.close();
    for (const child of children) {
      child.kill('SIGKILL');
    }
  }
});
