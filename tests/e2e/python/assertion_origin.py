"""An MCP origin on the Python SDK 2.3's own resource-server support, trusting the
worker's identity assertion (ASSERTION_KEY with ASSERTION_HEADER=Authorization).

Usage: assertion_origin.py PORT JWKS_URL WORKER_ISSUER AUDIENCE

Its token verifier checks the bearer token as the worker's assertion: signed by a key
in the worker's JWKS (ES256 or EdDSA), `iss` the worker, `aud` this origin, not
expired (PyJWT, which the SDK already depends on). The SDK's bearer middleware then
refuses anything else with 401, so a call sent straight to this origin with a forged
assertion, or with one the worker made for another origin, never reaches a tool.
The tool `whoami` answers with the caller the assertion names.
"""

import sys

import jwt
import uvicorn

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

port, jwks_url, issuer, audience = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class EdgeAssertionVerifier:
    def __init__(self) -> None:
        self.jwks = jwt.PyJWKClient(jwks_url)

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key, algorithms=["ES256", "EdDSA"], audience=audience, issuer=issuer)
        except jwt.PyJWTError:
            return None
        return AccessToken(
            token=token,
            client_id=claims.get("client_id", ""),
            scopes=claims.get("scope", "").split(),
            expires_at=claims["exp"],
            resource=audience,
            subject=claims.get("sub"),
            claims=claims,
        )


server = MCPServer(
    "assertion-origin",
    token_verifier=EdgeAssertionVerifier(),
    auth=AuthSettings(issuer_url=issuer, resource_server_url=audience, required_scopes=["mcp:tools"]),
)


@server.tool()
def whoami() -> dict[str, object]:
    """The caller the worker's assertion names."""
    token = get_access_token()
    claims = (token.claims or {}) if token else {}
    return {"sub": claims.get("sub"), "client_id": claims.get("client_id"), "token_iss": claims.get("token_iss")}


if __name__ == "__main__":
    app = server.streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
