"""The official MCP Python SDK's high-level client (`mcp` 2.3) through the whole OAuth
flow, speaking MCP 2026-07-28: `server/discover` instead of `initialize`, the standard
headers and `Mcp-Param-*` on every request, `subscriptions/listen`.

Usage: modern_client.py MCP_URL REDIRECT_URI CLIENT_NAME

Steps, each reported (a failed step reports its error and the run goes on):
  discover   the negotiated protocol version and the server's name
  tools      tools/list: names and cacheScope
  resources  resources/list: URIs and cacheScope
  echo       tools/call echo
  seen       tools/call seen: the headers the origin received
  deploy_us  tools/call deploy {"region": "us-1"} (Mcp-Param-Region: us-1)
  deploy_prod tools/call deploy {"region": "prod-1"}
  tools_after tools/list again, after any step-up
  readme     resources/read file:///pub/readme
  listen     subscriptions/listen on file:///pub/readme, then `touch` it: the event
Prints one JSON line: {"steps": {...}, "authorizations": [scope of each], "scope": "..."}.
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from oauth_client import headless_provider


def failure(e: BaseException) -> dict:
    code = getattr(getattr(e, "error", None), "code", None)
    return {"ok": False, "error": f"{type(e).__name__}: {e}"[:400], "code": code}


async def main(url: str, redirect_uri: str, client_name: str) -> None:
    provider, storage, seen = headless_provider(url, redirect_uri, client_name)
    steps: dict[str, dict] = {}

    async def step(name: str, run) -> None:
        try:
            steps[name] = {"ok": True, **(await run())}
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            steps[name] = failure(e)

    async with create_mcp_http_client(auth=provider) as http:
        async with Client(streamable_http_client(url, http_client=http), cache=None) as client:

            async def discover():
                info = client.server_info
                return {"version": client.protocol_version, "server": info.name if info else None}

            async def tools():
                r = await client.list_tools()
                return {"names": sorted(t.name for t in r.tools), "cacheScope": r.cache_scope}

            async def resources():
                r = await client.list_resources()
                return {"uris": sorted(str(x.uri) for x in r.resources), "cacheScope": r.cache_scope}

            def call(name: str, arguments: dict):
                async def run():
                    r = await client.call_tool(name, arguments)
                    if r.is_error:
                        raise RuntimeError(r.content[0].text if r.content else "tool error")
                    return {"text": r.content[0].text if r.content else None, "structured": r.structured_content}

                return run

            async def readme():
                r = await client.read_resource("file:///pub/readme")
                return {"text": r.contents[0].text, "cacheScope": r.cache_scope}

            async def listen():
                async with client.listen(resource_subscriptions=["file:///pub/readme"]) as sub:
                    await client.call_tool("touch", {"uri": "file:///pub/readme"})
                    event = await asyncio.wait_for(sub.__anext__(), 20)
                    return {"honored": list(sub.honored.resource_subscriptions or []), "event": type(event).__name__}

            await step("discover", discover)
            await step("tools", tools)
            await step("resources", resources)
            await step("echo", call("echo", {"message": "from python 2026"}))
            await step("seen", call("seen", {}))
            await step("deploy_us", call("deploy", {"region": "us-1"}))
            await step("deploy_prod", call("deploy", {"region": "prod-1"}))
            await step("tools_after", tools)
            await step("readme", readme)
            await step("listen", listen)

    scopes = [parse_qs(urlparse(a).query).get("scope", [""])[0] for a in seen["authorizations"]]
    print(
        json.dumps(
            {
                "steps": steps,
                "authorizations": scopes,
                "scope": storage.tokens.scope if storage.tokens else None,
                "client_id": storage.client.client_id if storage.client else None,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
