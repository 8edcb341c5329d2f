"""Python `websockets` (permessage-deflate on by default) against subscope started with
`--deflate`: the extension is agreed, events arrive compressed and inflate to the events.

usage: python3 deflate_client.py ws://HOST:PORT/graphql
Server expectations: started with `--auth-token interop --deflate`.
"""

import asyncio
import json
import sys

import websockets
from websockets.extensions.permessage_deflate import PerMessageDeflate

EVENTS = 30
STATS = (
    "{ serverStats { deflateConnectionsTotal deflatePayloadBytesTotal "
    "deflateWireBytesTotal } }"
)


async def operation(ws, op_id, query, n):
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}}))
    got = []
    while len(got) < n:
        m = json.loads(await ws.recv())
        if m.get("id") != op_id:
            continue
        if m["type"] == "next":
            got.append(m["payload"])
        elif m["type"] == "complete":
            break
        else:
            raise AssertionError(f"unexpected {m}")
    return got


async def run(url):
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        deflate = [e for e in ws.extensions if isinstance(e, PerMessageDeflate)]
        assert deflate, f"no permessage-deflate agreed: {ws.extensions}"
        print(f"  ok: permessage-deflate agreed ({deflate[0]})")
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": "interop"}}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        before = (await operation(ws, "s0", STATS, 1))[0]["data"]["serverStats"]
        events = await operation(
            ws, "p", "subscription { payload(bytes: 2000, everyMs: 5) }", EVENTS
        )
        assert len(events) == EVENTS, len(events)
        assert all(len(e["data"]["payload"]) == 2000 for e in events)
        print(f"  ok: {EVENTS} events of 2,000 bytes")
        await ws.send(json.dumps({"id": "p", "type": "complete"}))
        after = (await operation(ws, "s1", STATS, 1))[0]["data"]["serverStats"]
        payload = after["deflatePayloadBytesTotal"] - before["deflatePayloadBytesTotal"]
        wire = after["deflateWireBytesTotal"] - before["deflateWireBytesTotal"]
        assert after["deflateConnectionsTotal"] >= 1, after
        assert payload >= EVENTS * 2000 and wire * 5 < payload, (payload, wire)
        print(f"  ok: the server compressed {payload} bytes into {wire}")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(run(sys.argv[1]), timeout=30))
    except Exception as err:  # noqa: BLE001 - report any failure as the script's
        print(f"deflate_client.py: FAILED: {err!r}", file=sys.stderr)
        sys.exit(1)
    print("deflate_client.py: passed")
