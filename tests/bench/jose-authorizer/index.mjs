// The JS baseline: a complete MCP authorizer on `jose`, doing the checks mcp-edge-auth
// does on an MCP request (PRM, 401 challenge, JWT signature with a cached remote JWKS,
// iss, aud, exp/nbf, algorithm allowlist, scopes, 403 challenge, no token
// passthrough, identity headers) and forwarding to the origin.
import { createRemoteJWKSet, jwtVerify } from "jose";

let jwks;
const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const resource = env.RESOURCE_URL;
    const prm = `${new URL(resource).origin}/.well-known/oauth-protected-resource/mcp`;
    if (url.pathname.startsWith("/.well-known/oauth-protected-resource")) {
      return json(200, { resource, authorization_servers: [env.ISSUER], bearer_methods_supported: ["header"], scopes_supported: ["mcp:tools"] });
    }
    if (url.pathname !== "/mcp") return json(404, { error: "not_found" });
    const auth = request.headers.get("authorization") || "";
    const required = (env.REQUIRED_SCOPES || "").split(" ").filter(Boolean);
    const scope = required.join(" ");
    if (!/^bearer /i.test(auth)) {
      return json(401, { error: "unauthorized" }, { "www-authenticate": `Bearer scope="${scope}", resource_metadata="${prm}"` });
    }
    jwks ??= createRemoteJWKSet(new URL(env.JWKS_URL), { cacheMaxAge: 600_000, cooldownDuration: 30_000 });
    let payload;
    try {
      ({ payload } = await jwtVerify(auth.slice(7).trim(), jwks, {
        issuer: env.ISSUER,
        audience: resource,
        algorithms: ["RS256", "ES256", "PS256", "EdDSA"],
        clockTolerance: 60,
        requiredClaims: ["exp"],
      }));
    } catch (e) {
      return json(401, { error: "invalid_token", error_description: e.code || "invalid" }, { "www-authenticate": `Bearer error="invalid_token", scope="${scope}", resource_metadata="${prm}"` });
    }
    const granted = new Set([...String(payload.scope || "").split(" "), ...[payload.scp || []].flat()]);
    if (!required.every((s) => granted.has(s))) {
      return json(403, { error: "insufficient_scope" }, { "www-authenticate": `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${prm}"` });
    }
    const headers = new Headers(request.headers);
    headers.delete("authorization");
    for (const k of [...headers.keys()]) if (k.startsWith("x-auth-")) headers.delete(k);
    if (payload.sub) headers.set("x-auth-subject", payload.sub);
    if (payload.client_id || payload.azp) headers.set("x-auth-client-id", payload.client_id || payload.azp);
    headers.set("x-auth-scopes", [...granted].filter(Boolean).join(" "));
    return fetch(env.ORIGIN_URL + url.pathname + url.search, { method: request.method, headers, body: request.body });
  },
};
