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
//   AS_ENC_KEY   "1": also publish an encryption key (use "enc") in the JWKS, as Keycloak does
//   AS_OPAQUE    "1": issue opaque access tokens (checked by introspection, RFC 7662)
//   AS_INTROSPECTOR "id:secret": a confidential client (client_secret_basic) allowed to
//                introspect any token, as a resource server's credentials would be
//   AS_DPOP      "1": DPoP (RFC 9449): a token request with a proof gets a DPoP-bound token
//                (`cnf.jkt` in the JWT, and in the introspection answer for opaque ones)
//   AS_EXCHANGER "id:secret": a confidential client allowed the RFC 8693 token-exchange
//                grant (below), as the worker's TOKEN_EXCHANGE_CLIENT_* would be
//   AS_EXCHANGE_FROM  the audience a subject token must carry to be exchanged (the MCP
//                resource): the worker may only trade tokens that were meant for it
//
// Token shapes: a client whose client_name holds "shape=<rfc9068|hydra|keycloak|auth0>"
// gets access tokens reshaped like that server's (SPEC "Authorization-server shapes"),
// signed with "alg=<RS256|ES256|EdDSA>" if named, and with "break" one thing that
// server gets wrong in the field (the negative twin). Tokens are still minted and
// signed by oidc-provider; only the header and claims are rearranged.
import http from "node:http";
import { randomBytes, generateKeyPairSync } from "node:crypto";
import Provider, { errors } from "oidc-provider";
import * as jose from "jose";

const port = Number(process.env.AS_PORT);
const issuer = process.env.AS_ISSUER;
const jwks = JSON.parse(process.env.AS_KEYS);
// Keycloak publishes encryption keys next to its signature keys. oidc-provider will
// not hold a key it has no use for, so the published set is served here instead.
let publishedJwks;
if (process.env.AS_ENC_KEY === "1") {
  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pub = ({ d, p, q, dp, dq, qi, ...rest }) => rest;
  publishedJwks = JSON.stringify({
    keys: [{ ...publicKey.export({ format: "jwk" }), kid: "enc1", use: "enc", alg: "RSA-OAEP" }, ...jwks.keys.map(pub)],
  });
}
const tokenAlg = process.env.AS_TOKEN_ALG || "RS256";
const ttl = Number(process.env.AS_TOKEN_TTL || 3600);
const resourceScopes = process.env.AS_SCOPES || "mcp:tools mcp:admin";
const mount = new URL(issuer).pathname.replace(/\/$/, "");
const opaque = process.env.AS_OPAQUE === "1";
const staticClients = [];
if (process.env.AS_INTROSPECTOR) {
  const [id, secret] = process.env.AS_INTROSPECTOR.split(":");
  staticClients.push({
    client_id: id,
    client_secret: secret,
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: "client_secret_basic",
  });
}

const exchange = process.env.AS_EXCHANGER?.split(":");
const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
if (exchange) {
  staticClients.push({
    client_id: exchange[0],
    client_secret: exchange[1],
    grant_types: [TOKEN_EXCHANGE],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: "client_secret_basic",
  });
}

// "shape=hydra alg=ES256 break" in a client's name: how its tokens look.
function shapeOf(client) {
  const name = client?.clientName || "";
  return {
    shape: /shape=(\w+)/.exec(name)?.[1],
    alg: /alg=(\w+)/.exec(name)?.[1],
    broken: /\bbreak\b/.test(name),
  };
}

function reshape({ shape, broken }, jwt) {
  const p = jwt.payload;
  const resource = Array.isArray(p.aud) ? p.aud[0] : p.aud;
  if (shape === "rfc9068") {
    if (broken) p.aud = "https://another-resource.example/mcp";
  } else if (shape === "hydra") {
    jwt.header = { ...jwt.header, typ: "JWT" };
    p.aud = broken ? [] : [resource];
    p.scp = String(p.scope || "").split(" ").filter(Boolean);
    delete p.scope;
    p.ext = {};
    p.nbf = p.iat;
  } else if (shape === "keycloak") {
    jwt.header = { ...jwt.header, typ: "JWT" };
    p.typ = "Bearer";
    p.azp = p.client_id;
    delete p.client_id;
    p.aud = broken ? "account" : ["account", resource];
  } else if (shape === "auth0") {
    jwt.header = { ...jwt.header, typ: "JWT" };
    p.aud = [resource, `${issuer}userinfo`];
    p.azp = p.client_id;
    delete p.client_id;
    if (broken) p.iss = issuer.replace(/\/$/, "");
  }
}

const provider = new Provider(issuer, {
  jwks,
  clients: staticClients,
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
    dPoP: { enabled: process.env.AS_DPOP === "1" },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: resourceScopes,
        accessTokenFormat: opaque ? "opaque" : "jwt",
        accessTokenTTL: ttl,
        jwt: { sign: { alg: shapeOf(client).alg || tokenAlg } },
      }),
    },
  },
  ttl: { AccessToken: ttl, ClientCredentials: ttl },
  formats: {
    customizers: {
      jwt: async (ctx, token, jwt) => {
        const client = await provider.Client.find(token.clientId);
        const s = shapeOf(client);
        if (s.shape) reshape(s, jwt);
      },
    },
  },
  // An exchanged token names the actor (RFC 8693 §4.1) and the original client.
  extraTokenClaims: async (ctx, token) =>
    token.gty === "token_exchange" ? { act: { sub: token.clientId }, subject_client_id: token.exchangedFrom } : undefined,
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

// RFC 8693 token exchange as an extension grant (oidc-provider has none built in; this
// is the smallest honest one): the client (authenticated by oidc-provider, and allowed
// the grant) trades a JWT access token this server issued for the MCP resource
// (AS_EXCHANGE_FROM) for one to another resource (`resource`, one absolute URI), with
// at most the subject token's scopes, for the same user, with `act` naming the client.
if (exchange) {
  const localKeys = jose.createLocalJWKSet({ keys: jwks.keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub) });
  const exchanges = [];
  provider.registerGrantType(
    TOKEN_EXCHANGE,
    async (ctx) => {
      const { client, params } = ctx.oidc;
      if (params.subject_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest("subject_token_type must be an access token");
      if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest("only access tokens are issued");
      let subject;
      try {
        ({ payload: subject } = await jose.jwtVerify(params.subject_token, localKeys, { issuer, audience: process.env.AS_EXCHANGE_FROM }));
      } catch {
        throw new errors.InvalidGrant("the subject token is not a live access token for the MCP resource");
      }
      const resource = params.resource;
      if (typeof resource !== "string" || !URL.canParse(resource)) throw new errors.InvalidTarget("name one resource");
      const held = String(subject.scope || "").split(" ").filter(Boolean);
      const asked = params.scope ? params.scope.split(" ") : held;
      if (asked.some((s) => !held.includes(s))) throw new errors.InvalidScope("more scope than the subject token holds");
      const token = new provider.AccessToken({
        accountId: subject.sub,
        client,
        scope: asked.join(" "),
        gty: "token_exchange",
      });
      token.exchangedFrom = subject.client_id; // read by extraTokenClaims
      token.resourceServer = new provider.ResourceServer(resource, {
        scope: resourceScopes,
        accessTokenFormat: "jwt",
        accessTokenTTL: Number(process.env.AS_EXCHANGE_TTL || ttl),
        jwt: { sign: { alg: tokenAlg } },
      });
      const value = await token.save();
      exchanges.push({ sub: subject.sub, resource, scope: token.scope, client: client.clientId });
      ctx.body = { access_token: value, issued_token_type: ACCESS_TOKEN_TYPE, token_type: "Bearer", expires_in: token.expiration, scope: token.scope };
    },
    ["subject_token", "subject_token_type", "requested_token_type", "audience", "resource", "scope"],
    ["audience", "resource"],
  );
  globalThis.exchanges = exchanges;
}

// Registrations, for suites that count them: GET /__stats on the server's own port.
const registrations = [];
provider.on("registration_create.success", (ctx, client) => {
  registrations.push({ client_id: client.clientId, redirect_uris: client.redirectUris, client_name: client.clientName });
});

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
    if (req.url === "/__stats") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ registrations, exchanges: globalThis.exchanges || [] }));
      return;
    }
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
    if (publishedJwks && req.url === `${mount}/jwks`) {
      res.writeHead(200, { "content-type": "application/jwk-set+json" }).end(publishedJwks);
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
