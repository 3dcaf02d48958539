// A Hydra-shaped authorization server. Ory Hydra cannot run here (no internet to
// fetch it), so this is written from the facts in SPEC.md "Ory Hydra" and answers in
// the shape of tests/fixtures/hydra-register-response.json (captured from Hydra's
// `POST /oauth2/register`):
//   * discovery only at /.well-known/openid-configuration (Hydra before v25.4), no
//     registration_endpoint advertised, issuer with a trailing slash;
//   * POST /oauth2/register: 400 for client_secret, metadata, skip_consent or
//     access_token_strategy; the 201 answer has every unset string "" and unset list
//     null; `audience` is the list of audiences the client may later ask for;
//   * /oauth2/auth ignores RFC 8707 `resource`; `audience` (space separated) must be
//     allowed on the client, else error=invalid_request; requested scopes must be
//     among the client's; login and consent are approved at once for "hydra-user";
//   * /oauth2/token: authorization_code with PKCE S256 (public clients) and
//     client_credentials (client_secret_basic); JWT access tokens with header
//     typ "JWT", aud always an array ([] when none granted), scopes in `scp`,
//     client_id, ext, nbf, jti; or, with HYDRA_OPAQUE=1, opaque `ory_at_...` tokens
//     checked at the admin API's /admin/oauth2/introspect (Hydra's answer shape,
//     token_use "access_token");
//   * JWKS at /.well-known/jwks.json with two RS256 keys (Hydra's id-token and
//     access-token key sets), access tokens signed with the second.
// Settings: HYDRA_PORT, HYDRA_ISSUER (public, with trailing slash), HYDRA_OPAQUE.
// GET /stats reports what it received, for the tests.
import http from "node:http";
import { randomUUID, randomBytes, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as jose from "jose";

const port = Number(process.env.HYDRA_PORT);
const issuer = process.env.HYDRA_ISSUER;
const opaque = process.env.HYDRA_OPAQUE === "1";
const fixture = JSON.parse(readFileSync(new URL("../../fixtures/hydra-register-response.json", import.meta.url), "utf8"));
const REFUSED = ["client_secret", "metadata", "skip_consent", "access_token_strategy"];

const keys = [];
for (const kid of ["hydra.openid.id-token", "hydra.jwt.access-token"]) {
  const { privateKey, publicKey } = await jose.generateKeyPair("RS256", { extractable: true });
  keys.push({ kid, privateKey, jwk: { ...(await jose.exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } });
}
const signer = keys[1];

const clients = new Map();
const codes = new Map();
const tokens = new Map(); // opaque token -> introspection answer
const stats = { registrations: [], authorizations: [], tokenRequests: [], introspections: 0 };

const json = (res, status, body, headers = {}) =>
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
const words = (s) => String(s || "").split(" ").filter(Boolean);

async function readBody(req) {
  let body = "";
  for await (const c of req) body += c;
  return body;
}

async function mint(client, sub, scopes, audience) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: issuer, sub, aud: audience, client_id: client.client_id, exp: now + 3600, iat: now, nbf: now, jti: randomUUID(), scp: scopes, ext: {} };
  if (opaque) {
    const token = `ory_at_${randomBytes(24).toString("base64url")}.${randomBytes(24).toString("base64url")}`;
    tokens.set(token, claims);
    return token;
  }
  return new jose.SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: signer.kid, typ: "JWT" }).sign(signer.privateKey);
}

// The audiences and scopes a request may have, or the OAuth error it gets.
function grantable(client, params) {
  const audience = words(params.get("audience"));
  const notAllowed = audience.filter((a) => !client.audience.includes(a));
  if (notAllowed.length) return { error: "invalid_request", error_description: `Requested audience '${notAllowed.join(" ")}' has not been whitelisted by the OAuth 2.0 Client.` };
  const scope = words(params.get("scope"));
  const badScope = scope.filter((s) => !words(client.scope).includes(s));
  if (badScope.length) return { error: "invalid_scope", error_description: `The OAuth 2.0 Client is not allowed to request scope '${badScope.join(" ")}'.` };
  return { audience, scope };
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  try {
    if (url.pathname === "/stats") return json(res, 200, stats);
    if (url.pathname === "/.well-known/openid-configuration") {
      return json(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}oauth2/auth`,
        token_endpoint: `${issuer}oauth2/token`,
        jwks_uri: `${issuer}.well-known/jwks.json`,
        userinfo_endpoint: `${issuer}userinfo`,
        revocation_endpoint: `${issuer}oauth2/revoke`,
        response_types_supported: ["code", "code id_token", "id_token", "token id_token", "token", "token id_token code"],
        grant_types_supported: ["authorization_code", "implicit", "client_credentials", "refresh_token"],
        scopes_supported: ["offline_access", "offline", "openid"],
        token_endpoint_auth_methods_supported: ["client_secret_post", "client_secret_basic", "private_key_jwt", "none"],
        code_challenge_methods_supported: ["plain", "S256"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
      });
    }
    if (url.pathname === "/.well-known/jwks.json") return json(res, 200, { keys: keys.map((k) => k.jwk) });
    if (url.pathname === "/oauth2/register" && req.method === "POST") {
      const asked = JSON.parse(await readBody(req));
      stats.registrations.push(asked);
      const refused = REFUSED.filter((k) => k in asked);
      if (refused.length) return json(res, 400, { error: "invalid_request", error_description: `The request contains ${refused.join(", ")}, which may not be set in dynamic registration.` });
      const confidential = asked.token_endpoint_auth_method && asked.token_endpoint_auth_method !== "none";
      const client = {
        ...fixture,
        client_id: randomUUID(),
        client_name: asked.client_name ?? "",
        redirect_uris: asked.redirect_uris ?? null,
        grant_types: asked.grant_types ?? null,
        response_types: asked.response_types ?? null,
        scope: asked.scope ?? "offline_access offline openid",
        audience: Array.isArray(asked.audience) ? asked.audience : [],
        token_endpoint_auth_method: asked.token_endpoint_auth_method ?? "client_secret_basic",
        registration_client_uri: `${issuer}oauth2/register/`,
      };
      if (confidential) client.client_secret = randomBytes(16).toString("hex");
      else delete client.client_secret;
      client.registration_client_uri += client.client_id;
      clients.set(client.client_id, client);
      return json(res, 201, client);
    }
    if (url.pathname === "/oauth2/auth") {
      const p = url.searchParams;
      stats.authorizations.push(Object.fromEntries(p));
      const client = clients.get(p.get("client_id"));
      if (!client || !(client.redirect_uris || []).includes(p.get("redirect_uri"))) return json(res, 400, { error: "invalid_client" });
      const back = new URL(p.get("redirect_uri"));
      if (p.get("state")) back.searchParams.set("state", p.get("state"));
      const granted = grantable(client, p);
      if (granted.error || p.get("code_challenge_method") !== "S256") {
        back.searchParams.set("error", granted.error || "invalid_request");
        back.searchParams.set("error_description", granted.error_description || "PKCE S256 is required");
        return res.writeHead(303, { location: back.href }).end();
      }
      const code = `ory_ac_${randomBytes(16).toString("base64url")}`;
      codes.set(code, { client, ...granted, challenge: p.get("code_challenge"), redirect: p.get("redirect_uri") });
      back.searchParams.set("code", code);
      back.searchParams.set("scope", granted.scope.join(" "));
      return res.writeHead(303, { location: back.href }).end();
    }
    if (url.pathname === "/oauth2/token" && req.method === "POST") {
      const p = new URLSearchParams(await readBody(req));
      stats.tokenRequests.push(Object.fromEntries(p));
      if (p.get("grant_type") === "authorization_code") {
        const c = codes.get(p.get("code"));
        codes.delete(p.get("code"));
        const verifier = createHash("sha256").update(p.get("code_verifier") || "").digest("base64url");
        if (!c || c.client.client_id !== p.get("client_id") || c.redirect !== p.get("redirect_uri") || verifier !== c.challenge) {
          return json(res, 400, { error: "invalid_grant" });
        }
        const access = await mint(c.client, "hydra-user", c.scope, c.audience);
        return json(res, 200, { access_token: access, token_type: "bearer", expires_in: 3599, scope: c.scope.join(" ") }, { "cache-control": "no-store" });
      }
      if (p.get("grant_type") === "client_credentials") {
        const [id, secret] = Buffer.from((req.headers.authorization || "").replace(/^Basic /, ""), "base64").toString().split(":").map(decodeURIComponent);
        const client = clients.get(id);
        if (!client || client.client_secret !== secret) return json(res, 401, { error: "invalid_client" });
        const granted = grantable(client, p);
        if (granted.error) return json(res, 400, granted);
        const access = await mint(client, client.client_id, granted.scope, granted.audience);
        return json(res, 200, { access_token: access, token_type: "bearer", expires_in: 3599, scope: granted.scope.join(" ") }, { "cache-control": "no-store" });
      }
      return json(res, 400, { error: "unsupported_grant_type" });
    }
    if (url.pathname === "/admin/oauth2/introspect" && req.method === "POST") {
      stats.introspections++;
      const claims = tokens.get(new URLSearchParams(await readBody(req)).get("token"));
      if (!claims || claims.exp < Date.now() / 1000) return json(res, 200, { active: false });
      const { scp, jti, ...rest } = claims;
      return json(res, 200, { active: true, ...rest, scope: scp.join(" "), token_type: "Bearer", token_use: "access_token" });
    }
    // Hydra answers unknown routes with a JSON 404 (also /.well-known/oauth-authorization-server before v25.4).
    return json(res, 404, { error: "Not Found" });
  } catch (e) {
    return json(res, 500, { error: "server_error", error_description: String(e) });
  }
});
server.listen(port, "127.0.0.1", () => console.log(`hydra-shaped server ${issuer} on 127.0.0.1:${port}`));
