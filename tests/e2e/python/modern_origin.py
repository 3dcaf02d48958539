"""An MCP origin on the official Python SDK (`mcp` 2.3), speaking 2026-07-28 and earlier.

Usage: modern_origin.py PORT

What the worker must handle under 2026-07-28, served by the SDK's own server:
- list results marked `"cacheScope": "public"` (ttl 60 s), which the worker must turn
  `"private"` when it filters them per token;
- `deploy`, whose `region` argument is mirrored into `Mcp-Param-Region` (x-mcp-header);
- `seen`, answering with the request headers the origin received (MCP and identity
  headers, and whether an `Authorization` came through);
- `touch`, which marks a resource updated so a `subscriptions/listen` stream gets an event;
- resources under `file:///pub/` and `file:///secret/`.
Every tool call is counted (GET /calls), so a test can tell that a refused call never
arrived. The SDK validates the standard headers itself (it is a server that reads the
body), which is what a request the worker lets through must survive.
"""

import sys
from typing import Annotated

import uvicorn
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer

PUBLIC = CacheHint(ttl_ms=60_000, scope="public")
calls: list[str] = []

server = MCPServer(
    "modern-origin",
    cache_hints={
        "tools/list": PUBLIC,
        "prompts/list": PUBLIC,
        "resources/list": PUBLIC,
        "resources/templates/list": PUBLIC,
        "resources/read": PUBLIC,
    },
)


@server.tool()
def echo(message: str) -> str:
    """Echo the message back."""
    calls.append("echo")
    return f"echo: {message}"


@server.tool()
def deploy(
    region: Annotated[str, Field(description="where to deploy", json_schema_extra={"x-mcp-header": "Region"})],
    ctx: Context,
    service: str = "web",
) -> str:
    """Deploy a service to a region."""
    calls.append(f"deploy:{region}")
    mirrored = {k.lower(): v for k, v in (ctx.headers or {}).items()}.get("mcp-param-region")
    return f"deployed {service} to {region} (Mcp-Param-Region: {mirrored})"


@server.tool()
def delete_repo(name: str) -> str:
    """Delete a repository (admin only)."""
    calls.append("delete_repo")
    return f"deleted {name}"


@server.tool()
def seen(ctx: Context) -> dict[str, object]:
    """The request headers this origin received."""
    calls.append("seen")
    headers = dict(ctx.headers or {})
    return {
        "authorization": "authorization" in {k.lower() for k in headers},
        "headers": {k.lower(): v for k, v in headers.items() if k.lower().startswith(("mcp-", "x-auth-"))},
    }


@server.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Mark a resource updated (listen streams subscribed to it get an event)."""
    calls.append("touch")
    await ctx.notify_resource_updated(uri)
    return f"touched {uri}"


@server.resource("file:///pub/readme", mime_type="text/plain")
def readme() -> str:
    return "public readme"


@server.resource("file:///secret/plan", mime_type="text/plain")
def plan() -> str:
    return "secret plan"


@server.prompt()
def greet(name: str) -> str:
    return f"Say hello to {name}."


@server.custom_route("/calls", methods=["GET"])
async def call_log(_: Request) -> JSONResponse:
    return JSONResponse(calls)


if __name__ == "__main__":
    app = server.streamable_http_app(stateless_http=True, json_response=False)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
