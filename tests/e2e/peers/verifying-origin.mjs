// An MCP origin that trusts nothing but a token it verifies itself, the way an origin
// reachable from anywhere must: the official TypeScript SDK server (stateless
// Streamable HTTP) behind a few lines of `jose`. Every request needs
// `Authorization: Bearer <JWT>` signed by a key of VERIFY_JWKS, with issuer
// VERIFY_ISSUER and audience VERIFY_AUDIENCE (and header typ VERIFY_TYP when set);
// anything else is 401. This is the origin docs/assertion.md and docs/token-exchange.md
// show: pointed at the worker's JWKS it checks identity assertions, at the
// authorization server's it checks exchanged tokens.
//   POST /mcp     MCP: tool "whoami" answers the verified claims
//   GET  /calls   what it accepted and refused, in order
// Settings: ORIGIN_PORT, VERIFY_JWKS, VERIFY_ISSUER, VERIFY_AUDIENCE, VERIFY_TYP.
import http from "node:http";
import * as jose from "jose";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

const port = Number(process.env.ORIGIN_PORT);
const keys = jose.createRemoteJWKSet(new URL(process.env.VERIFY_JWKS));
const options = { issuer: process.env.VERIFY_ISSUER, audience: process.env.VERIFY_AUDIENCE, ...(process.env.VERIFY_TYP ? { typ: process.env.VERIFY_TYP } : {}) };
const calls = [];

/** The verified claims of the request's bearer token, or why there are none. */
async function caller(req) {
  const m = /^Bearer ([^ ]+)$/.exec(req.headers.authorization || "");
  if (!m) return { error: "no bearer token" };
  try {
    return { claims: (await jose.jwtVerify(m[1], keys, options)).payload };
  } catch (e) {
    return { error: e.claim ? `${e.code}: ${e.claim}` : e.code || String(e) };
  }
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString("utf8");
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://origin");
  try {
    if (url.pathname === "/calls") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(calls));
      return;
    }
    if (url.pathname !== "/mcp") return res.writeHead(404).end();
    const who = await caller(req);
    calls.push(who.error ? { refused: who.error } : { accepted: who.claims.sub });
    if (who.error) {
      res.writeHead(401, { "content-type": "application/json", "www-authenticate": 'Bearer error="invalid_token"' });
      res.end(JSON.stringify({ error: "invalid_token", error_description: who.error }));
      return;
    }
    const body = req.method === "POST" ? JSON.parse((await readBody(req)) || "null") : undefined;
    const mcp = new McpServer({ name: "verifying-origin", version: "1.0.0" });
    mcp.registerTool("whoami", { description: "The caller, as the verified token says" }, async () => ({
      content: [{ type: "text", text: JSON.stringify(who.claims) }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on("close", () => {
      transport.close();
      mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, body);
  } catch (e) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: String(e) }));
  }
});
server.listen(port, "127.0.0.1", () => console.log(`verifying origin on 127.0.0.1:${port}`));
