"""The official MCP Python SDK client, driven headlessly through the whole OAuth flow.

Usage: oauth_client.py MCP_URL [REDIRECT_URI] [CLIENT_NAME]

The SDK's OAuthClientProvider discovers, registers and authorizes; its redirect
handler here follows the authorization server's redirects (no automatic following,
a cookie jar) up to the redirect URI and hands the code, state and RFC 9207 `iss`
to the callback handler, which the SDK checks against the authorization server's
metadata. Then the client lists the tools and calls `echo`. Prints one JSON line:
{"tools": [...], "echo": "...", "iss": "...", "scope": "...", "authorize": "<url>"}.
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def headless_provider(url: str, redirect_uri: str, client_name: str):
    """The SDK's OAuthClientProvider with a headless browser: returns the provider, its
    storage, and a dict that receives the last authorization URL (`authorize`), every
    authorization URL (`authorizations`) and the authorization response (`code`)."""
    seen: dict = {"authorizations": []}

    async def redirect_handler(authorization_url: str) -> None:
        seen["authorize"] = authorization_url
        seen["authorizations"].append(authorization_url)
        async with httpx2.AsyncClient(follow_redirects=False) as browser:
            nxt = authorization_url
            for _ in range(20):
                response = await browser.get(nxt)
                location = response.headers.get("location")
                if not location:
                    raise RuntimeError(f"authorization stopped at {response.status_code} {nxt}")
                target = urljoin(nxt, location)
                if target.startswith(redirect_uri):
                    query = {k: v[0] for k, v in parse_qs(urlparse(target).query).items()}
                    if "error" in query:
                        raise RuntimeError(f"authorization error: {query}")
                    seen["code"] = AuthorizationCodeResult(
                        code=query["code"], state=query.get("state"), iss=query.get("iss")
                    )
                    return
                nxt = target
        raise RuntimeError("too many redirects")

    async def callback_handler() -> AuthorizationCodeResult:
        return seen["code"]

    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name=client_name,
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    return provider, storage, seen


async def main(url: str, redirect_uri: str, client_name: str) -> None:
    provider, storage, seen = headless_provider(url, redirect_uri, client_name)
    async with create_mcp_http_client(auth=provider) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                called = await session.call_tool("echo", {"message": "from python"})
    print(
        json.dumps(
            {
                "tools": [t.name for t in tools.tools],
                "echo": called.content[0].text,
                "iss": seen["code"].iss,
                "scope": storage.tokens.scope if storage.tokens else None,
                "authorize": seen.get("authorize"),
                "client_id": storage.client.client_id if storage.client else None,
            }
        )
    )


if __name__ == "__main__":
    args = sys.argv[1:] + [None, None]
    asyncio.run(main(args[0], args[1] or "http://127.0.0.1:9/python-callback", args[2] or "python-sdk-e2e"))
