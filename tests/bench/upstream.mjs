// The benchmark's authorization server: RFC 8414 metadata and a JWKS, counting how
// often each is fetched (GET /stats). UPSTREAM_PORT, UPSTREAM_JWKS (public JWKS JSON).
import http from "node:http";

const port = Number(process.env.UPSTREAM_PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = process.env.UPSTREAM_JWKS;
const hits = { discovery: 0, jwks: 0, joseJwks: 0 };
const metadata = JSON.stringify({
  issuer,
  authorization_endpoint: `${issuer}/authorize`,
  token_endpoint: `${issuer}/token`,
  jwks_uri: `${issuer}/jwks`,
  response_types_supported: ["code"],
  code_challenge_methods_supported: ["S256"],
});
http
  .createServer((req, res) => {
    const send = (status, text) => res.writeHead(status, { "content-type": "application/json" }).end(text);
    if (req.url === "/.well-known/oauth-authorization-server") {
      hits.discovery++;
      return send(200, metadata);
    }
    if (req.url === "/jwks") {
      hits.jwks++;
      return send(200, jwks);
    }
    if (req.url === "/jwks-jose") {
      hits.joseJwks++;
      return send(200, jwks);
    }
    if (req.url === "/stats") return send(200, JSON.stringify(hits));
    send(404, "{}");
  })
  .listen(port, "127.0.0.1");
