"""Python `gql` (websockets transport) against subscope, once per subprotocol.

usage: python3 gql_client.py ws://HOST:PORT/graphql
Server expectations: started with `--auth-token interop`.
"""

import asyncio
import sys

from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

PARAMS = {"token": "interop"}


async def run(url: str, subprotocol: str) -> None:
    transport = WebsocketsTransport(
        url=url, subprotocols=[subprotocol], init_payload=PARAMS
    )
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        result = await session.execute(gql("{ hello }"))
        assert result == {"hello": "world"}, result
        print(f"  ok: {subprotocol}: query")
        ticks = [
            item["ticks"]
            async for item in session.subscribe(
                gql("subscription { ticks(everyMs: 20, count: 3) }")
            )
        ]
        assert ticks == [0, 1, 2], ticks
        print(f"  ok: {subprotocol}: subscription 0,1,2 then complete")
        published = await session.execute(
            gql('mutation { publish(topic: "nobody", message: "x") }')
        )
        assert published == {"publish": 0}, published
        print(f"  ok: {subprotocol}: mutation")
        # Leave a subscription early: the server must drop it.
        async for item in session.subscribe(gql("subscription { ticks(everyMs: 20) }")):
            if item["ticks"] == 2:
                break
        for _ in range(200):
            live = await session.execute(gql("{ liveStreams }"))
            if live["liveStreams"] == 0:
                break
            await asyncio.sleep(0.05)
        assert live == {"liveStreams": 0}, live
        print(f"  ok: {subprotocol}: leaving a subscription frees it on the server")


async def main(url: str) -> None:
    for subprotocol in (
        WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,  # graphql-transport-ws
        WebsocketsTransport.APOLLO_SUBPROTOCOL,  # legacy graphql-ws
    ):
        await asyncio.wait_for(run(url, subprotocol), timeout=30)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except Exception as err:  # noqa: BLE001 - report and fail
        print(f"gql_client.py: FAILED: {err!r}", file=sys.stderr)
        sys.exit(1)
    print("gql_client.py: passed")
