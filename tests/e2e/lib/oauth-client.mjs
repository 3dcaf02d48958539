// The official MCP TypeScript SDK client, driven headlessly through the whole OAuth
// flow: redirectToAuthorization is answered by following the authorization server's
// redirects (fetch with redirect: "manual" and a cookie jar) up to the redirect URI,
// then transport.finishAuth(code). E2E_DEBUG=1 prints each redirect hop.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

export async function followToRedirect(start, redirectUri) {
  const jar = new Map();
  let next = String(start);
  for (let hop = 0; hop < 20; hop++) {
    if (process.env.E2E_DEBUG) console.error("hop", next);
    const res = await fetch(next, {
      redirect: "manual",
      headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") },
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const i = pair.indexOf("=");
      jar.set(pair.slice(0, i).trim(), pair.slice(i + 1));
    }
    const location = res.headers.get("location");
    if (!location) throw new Error(`authorization stopped at ${res.status} ${next}: ${(await res.text()).slice(0, 500)}`);
    const url = new URL(location, next);
    if (url.href.startsWith(redirectUri)) {
      if (url.searchParams.get("error")) throw new Error(`authorization error: ${url.search}`);
      return { code: url.searchParams.get("code"), iss: url.searchParams.get("iss"), url };
    }
    next = url.href;
  }
  throw new Error("too many redirects");
}

export class HeadlessProvider {
  constructor({
    redirectUrl = "http://127.0.0.1:9/callback",
    clientName = "e2e-client",
    scope,
    grantTypes = ["authorization_code", "refresh_token"],
    clientMetadataUrl,
  } = {}) {
    this._redirectUrl = redirectUrl;
    // A Client ID Metadata Document URL: used instead of registration when the
    // authorization server advertises client_id_metadata_document_supported.
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this._metadata = {
      client_name: clientName,
      redirect_uris: [redirectUrl],
      grant_types: grantTypes,
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      ...(scope ? { scope } : {}),
    };
    this.registrations = 0;
    this.authorizations = [];
  }
  get redirectUrl() {
    return this._redirectUrl;
  }
  get clientMetadata() {
    return this._metadata;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this.registrations++;
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(t) {
    this._tokens = t;
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
  async redirectToAuthorization(url) {
    this.authorizations.push(url);
    const { code } = await followToRedirect(url, this._redirectUrl);
    this.code = code;
  }
}

/** Connect the SDK client to `mcpUrl`, running the OAuth flow when challenged. */
export async function connect(mcpUrl, provider, requestInit, fetchFn) {
  const options = { authProvider: provider, requestInit, ...(fetchFn ? { fetch: fetchFn } : {}) };
  const attempt = async () => {
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), options);
    const client = new Client({ name: "mcp-edge-auth-e2e", version: "1.0.0" });
    await client.connect(transport);
    return { client, transport };
  };
  try {
    return await attempt();
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  // The failed attempt's transport holds the code verifier via the provider.
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), options);
  await transport.finishAuth(provider.code);
  return attempt();
}
