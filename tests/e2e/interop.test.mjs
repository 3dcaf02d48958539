// Client interoperability through the real worker (wasm in workerd under wrangler dev),
// with oidc-provider minting short-lived tokens (3 s, no clock leeway at the worker)
// and the reference MCP server as the origin:
//   - token refresh mid-session with the TypeScript SDK client
//   - a machine client (client_credentials) registered through the worker, with the
//     SDK's own ClientCredentialsProvider
//   - a 2025-03-26-era client: no PRM, authorization-server metadata at the MCP host's
//     root, no `resource` anywhere
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as rig from "./lib/rig.mjs";
import { HeadlessProvider, connect, followToRedirect } from "./lib/oauth-client.mjs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";

const TTL = 3;
let base;

before(async () => {
  rig.buildWorker();
  const [wPort, asPort, oPort] = [await rig.freePort(), await rig.freePort(), await rig.freePort()];
  base = `http://127.0.0.1:${wPort}`;
  const keys = await rig.makeKeys();
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys, ttl: TTL });
  await rig.startEverythingOrigin(oPort);
  await rig.startWorker({
    port: wPort,
    vars: {
      ...rig.singleHostVars(base, oPort, asPort),
      SCOPES_SUPPORTED: "mcp:tools mcp:admin",
      REQUIRED_SCOPES: "mcp:tools",
      CLOCK_LEEWAY_SECONDS: "0",
    },
  });
});

after(rig.stopAll);

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split(".")[1], "base64url"));
const echo = async (client, message) =>
  (await client.callTool({ name: "echo", arguments: { message } })).content[0].text;

test("token refresh: an access token expires mid-session; the SDK client refreshes on the 401 and carries on", async () => {
  const provider = new HeadlessProvider({ clientName: "refresher" });
  const { client } = await connect(`${base}/mcp`, provider);
  assert.ok((await client.listTools()).tools.some((t) => t.name === "echo"));
  assert.match(await echo(client, "before"), /before/);
  const first = provider.tokens();
  assert.ok(first.refresh_token, "oidc-provider issued a refresh token");
  assert.equal(claimsOf(first.access_token).exp - claimsOf(first.access_token).iat, TTL);

  await new Promise((r) => setTimeout(r, (TTL + 1.5) * 1000));
  assert.match(await echo(client, "after"), /after/);
  const second = provider.tokens();
  assert.notEqual(second.access_token, first.access_token, "a new access token");
  assert.equal(claimsOf(second.access_token).aud, `${base}/mcp`, "still bound to the resource");
  assert.equal(provider.registrations, 1, "no second registration");
  assert.equal(provider.authorizations.length, 1, "no second user authorization");
  await client.close();
});

test("a machine client registers through the worker and uses client_credentials", async () => {
  const reg = await fetch(`${base}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: "machine",
      grant_types: ["client_credentials"],
      response_types: [],
      token_endpoint_auth_method: "client_secret_basic",
      scope: "mcp:tools",
    }),
  });
  const info = await reg.json();
  assert.equal(reg.status, 201, JSON.stringify(info));
  assert.ok(info.client_id && info.client_secret);
  assert.deepEqual(info.grant_types, ["client_credentials"]);

  const provider = new ClientCredentialsProvider({ clientId: info.client_id, clientSecret: info.client_secret, scope: "mcp:tools" });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { authProvider: provider });
  const client = new Client({ name: "machine", version: "1.0.0" });
  await client.connect(transport);
  assert.ok((await client.listTools()).tools.some((t) => t.name === "echo"));
  assert.match(await echo(client, "no user"), /no user/);
  const claims = claimsOf(provider.tokens().access_token);
  assert.equal(claims.aud, `${base}/mcp`);
  assert.equal(claims.client_id, info.client_id);
  assert.equal(claims.sub, info.client_id, "no user behind the token: sub is the client (RFC 9068 §2.2)");
  await client.close();
});

test("a 2025-03-26-era client: metadata at the host's root, no PRM, no resource", async () => {
  const meta = await (await fetch(`${base}/.well-known/oauth-authorization-server`)).json();
  assert.equal(meta.registration_endpoint, `${base}/register`);
  assert.ok(meta.code_challenge_methods_supported.includes("S256"));
  const redirect = "http://127.0.0.1:9/legacy";
  const reg = await fetch(meta.registration_endpoint, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: "legacy",
      redirect_uris: [redirect],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    }),
  });
  const { client_id } = await reg.json();
  assert.equal(reg.status, 201);
  const verifier = randomBytes(32).toString("base64url");
  const authorize = new URL(meta.authorization_endpoint);
  authorize.search = new URLSearchParams({
    response_type: "code",
    client_id,
    redirect_uri: redirect,
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
    state: "s1",
  }).toString();
  const { code } = await followToRedirect(authorize, redirect);
  const tokenRes = await fetch(meta.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirect, client_id, code_verifier: verifier }),
  });
  const tokens = await tokenRes.json();
  assert.equal(tokenRes.status, 200, JSON.stringify(tokens));
  assert.equal(claimsOf(tokens.access_token).aud, `${base}/mcp`, "bound to the resource the worker added");

  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${tokens.access_token}` } },
  });
  const client = new Client({ name: "legacy", version: "1.0.0" });
  await client.connect(transport);
  assert.ok((await client.listTools()).tools.some((t) => t.name === "echo"));
  assert.match(await echo(client, "legacy"), /legacy/);
  await client.close();
});
