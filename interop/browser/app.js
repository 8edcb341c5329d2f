// The page's client: npm `graphql-ws` bundled for the browser, over the browser's own WebSocket.
import { createClient } from 'graphql-ws';

const params = new URLSearchParams(window.location.search);
window.events = [];
window.failure = null;
const client = createClient({
  url: params.get('ws'),
  connectionParams: { token: 'interop' },
  retryAttempts: 0,
});
client.subscribe(
  { query: 'subscription { ticks(everyMs: 50) }' },
  {
    next: (result) => {
      window.events.push(result.data.ticks);
      document.getElementById('ticks').textContent = String(result.data.ticks);
    },
    error: (err) => { window.failure = String(err?.reason ?? err?.message ?? err); },
    complete: () => {},
  },
);
