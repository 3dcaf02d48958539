// A Hydra-shaped registration upstream. Ory Hydra cannot run here, so this answers
// registrations in the exact shape of Hydra's `POST /oauth2/register` captured in
// tests/fixtures/hydra-register-response.json (every unset string "", every unset
// list null, audience [], jwks {}, metadata {}, registration_access_token, ...).
//
// So that the rest of the OAuth flow can complete, the client is really registered
// at the suite's oidc-provider (HYDRA_BACKEND, its registration endpoint) and the
// real client_id, redirect_uris, grant and response types and scope are placed into
// the Hydra-shaped answer. Settings: HYDRA_PORT, HYDRA_BACKEND.
import http from "node:http";
import { readFileSync } from "node:fs";

const port = Number(process.env.HYDRA_PORT);
const backend = process.env.HYDRA_BACKEND;
const fixture = JSON.parse(readFileSync(new URL("../../fixtures/hydra-register-response.json", import.meta.url), "utf8"));
let registrations = 0;

const server = http.createServer(async (req, res) => {
  if (req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ registrations }));
    return;
  }
  if (req.method !== "POST" || req.url !== "/oauth2/register") {
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not_found"}');
    return;
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const asked = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const real = await fetch(backend, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(asked),
  });
  const body = await real.json();
  if (!real.ok) {
    res.writeHead(real.status, { "content-type": "application/json" }).end(JSON.stringify(body));
    return;
  }
  registrations++;
  const shaped = {
    ...fixture,
    client_id: body.client_id,
    client_name: asked.client_name ?? "",
    redirect_uris: body.redirect_uris ?? null,
    grant_types: body.grant_types ?? null,
    response_types: body.response_types ?? null,
    scope: asked.scope ?? "",
    token_endpoint_auth_method: body.token_endpoint_auth_method ?? "none",
    registration_client_uri: `http://127.0.0.1:${port}/oauth2/register/${body.client_id}`,
  };
  res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify(shaped));
});
server.listen(port, "127.0.0.1", () => console.log(`hydra-shaped registration on 127.0.0.1:${port}`));
