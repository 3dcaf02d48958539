// A real OAuth 2.1 authorization server for the end-to-end suite and the demo:
// oidc-provider with dynamic registration, PKCE, resource indicators (RFC 8707) and
// RFC 9068 JWT access tokens. Login and consent are approved automatically for the
// user "demo-user", granting exactly the scopes and resource the client asked for.
//
// Mounted at the issuer's path (e.g. /oidc) so it can sit behind the worker's
// AS_PASSTHROUGH in the single-host layout. Settings come from the environment:
//   AS_PORT      port to listen on (127.0.0.1)
//   AS_ISSUER    public issuer, e.g. http://127.0.0.1:8787/oidc
//   AS_KEYS      JSON {"keys": [private JWKs]}; the first key signs tokens unless AS_TOKEN_ALG says
//   AS_TOKEN_ALG signing algorithm of access tokens (RS256 default)
//   AS_TOKEN_TTL access-token lifetime in seconds (3600 default)
//   AS_SCOPES    resource scopes on offer (default "mcp:tools mcp:admin")
import http from "node:http";
import { randomBytes } from "node:crypto";
import Provider from "oidc-provider";

const port = Number(process.env.AS_PORT);
const issuer = process.env.AS_ISSUER;
const jwks = JSON.parse(process.env.AS_KEYS);
const tokenAlg = process.env.AS_TOKEN_ALG || "RS256";
const ttl = Number(process.env.AS_TOKEN_TTL || 3600);
const resourceScopes = process.env.AS_SCOPES || "mcp:tools mcp:admin";
const mount = new URL(issuer).pathname.replace(/\/$/, "");

const provider = new Provider(issuer, {
  jwks,
  cookies: { keys: [randomBytes(16).toString("hex")] },
  scopes: ["openid", "offline_access", ...resourceScopes.split(" ")],
  clientDefaults: {
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: resourceScopes,
        accessTokenFormat: "jwt",
        accessTokenTTL: ttl,
        jwt: { sign: { alg: tokenAlg } },
      }),
    },
  },
  ttl: { AccessToken: ttl, ClientCredentials: ttl },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed("refresh_token"),
  interactions: { url: (ctx, interaction) => `${mount}/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  // Auto-consent: a grant holding exactly what this authorization request asks for.
  loadExistingGrant: async (ctx) => {
    const { client, session, params } = ctx.oidc;
    if (!session?.accountId) return undefined;
    return grantFor(client.clientId, session.accountId, params);
  },
});
provider.proxy = true;

async function grantFor(clientId, accountId, params) {
  const grant = new provider.Grant({ clientId, accountId });
  const requested = String(params.scope || "").split(" ").filter(Boolean);
  // oidc-provider counts every scope it lists in `scopes` as an OP scope too.
  if (requested.length) grant.addOIDCScope(requested.join(" "));
  const rs = requested.filter((s) => s !== "openid" && s !== "offline_access").join(" ");
  for (const r of [params.resource].flat().filter(Boolean)) grant.addResourceScope(r, rs);
  await grant.save();
  return grant;
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    if (req.url.startsWith(`${mount}/interaction/`)) {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === "login") {
        await provider.interactionFinished(req, res, { login: { accountId: "demo-user" } }, { mergeWithLastSubmission: false });
        return;
      }
      // consent: grant what was asked, as loadExistingGrant would
      const grant = await grantFor(details.params.client_id, details.session.accountId, details.params);
      await provider.interactionFinished(req, res, { consent: { grantId: grant.jti } }, { mergeWithLastSubmission: true });
      return;
    }
    if (mount && req.url.startsWith(`${mount}/`)) {
      req.originalUrl = req.url;
      req.url = req.url.slice(mount.length);
      return callback(req, res);
    }
    if (!mount) return callback(req, res);
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not_found"}');
  } catch (e) {
    res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: "server_error", error_description: String(e) }));
  }
});
server.listen(port, "127.0.0.1", () => console.log(`authorization server ${issuer} on 127.0.0.1:${port}`));
