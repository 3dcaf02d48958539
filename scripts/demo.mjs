// The local demo: the worker (wasm in workerd, `wrangler dev --env demo`) in front of
// the bundled MCP origin (@modelcontextprotocol/server-everything) and authorization
// server (oidc-provider, auto-approving the user "demo-user"), all on 127.0.0.1.
//
//   node scripts/demo.mjs           run until Ctrl-C (or SIGTERM, SIGHUP)
//   node scripts/demo.mjs --check   run the TypeScript SDK client through it once, then exit
//
// Ports: DEMO_PORT (worker, 8787), DEMO_ORIGIN_PORT (8931), DEMO_AS_PORT (8932).
import net from "node:net";
import * as rig from "../tests/e2e/lib/rig.mjs";
import { HeadlessProvider, connect } from "../tests/e2e/lib/oauth-client.mjs";

const port = Number(process.env.DEMO_PORT || 8787);
const originPort = Number(process.env.DEMO_ORIGIN_PORT || 8931);
const asPort = Number(process.env.DEMO_AS_PORT || 8932);
const check = process.argv.includes("--check");
const base = `http://127.0.0.1:${port}`;

// Every way of stopping the demo stops everything it started: Ctrl-C (SIGINT), a
// process manager or `timeout` (SIGTERM), a closed terminal (SIGHUP). (SIGKILL cannot
// be caught: then stop the servers on the ports above yourself.)
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    await rig.stopAll();
    process.exit(0);
  });
}

/** Is `p` free on 127.0.0.1? */
function free(p) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(p, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

const wanted = [
  [port, "DEMO_PORT", "the worker"],
  [originPort, "DEMO_ORIGIN_PORT", "the MCP origin"],
  [asPort, "DEMO_AS_PORT", "the authorization server"],
];
for (const [p, variable, what] of wanted) {
  if (!(await free(p))) {
    console.error(
      `demo: port ${p} (${what}) is in use on 127.0.0.1. Stop what runs there (an earlier demo? see \`lsof -i :${p}\`), or pick another port: ${variable}=<port> ./scripts/demo.sh`,
    );
    process.exit(1);
  }
}

try {
  const keys = await rig.makeKeys();
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys });
  await rig.startEverythingOrigin(originPort);
  const worker = await rig.startWorker({
    port,
    env: "demo",
    vars: {
      ORIGIN_URL: `http://127.0.0.1:${originPort}`,
      RESOURCE_URL: `${base}/mcp`,
      ISSUER: `${base}/oidc`,
      AS_URL: `http://127.0.0.1:${asPort}`,
    },
  });
  console.log(`
mcp-edge-auth demo is running.

  MCP endpoint (point your MCP client here):  ${base}/mcp
  Protected resource metadata:                ${base}/.well-known/oauth-protected-resource/mcp
  Authorization server (behind the worker):   ${base}/oidc  (logs in "demo-user" automatically)
  MCP origin (server-everything):             http://127.0.0.1:${originPort}/mcp

  e.g. npx @modelcontextprotocol/inspector, transport "Streamable HTTP", URL ${base}/mcp
`);
  if (check) {
    const provider = new HeadlessProvider({ clientName: "demo-check" });
    const { client } = await connect(`${base}/mcp`, provider);
    const tools = await client.listTools();
    const echo = await client.callTool({ name: "echo", arguments: { message: "hello from the demo" } });
    console.log(`check: OAuth flow done, ${tools.tools.length} tools listed, echo said: ${echo.content[0].text}`);
    await client.close();
    await rig.stopAll();
    process.exit(0);
  }
  console.log("Worker log (one JSON line per request) follows. Ctrl-C stops everything.\n");
  worker.stdout.on("data", (d) => process.stdout.write(d));
} catch (e) {
  console.error(`demo failed: ${e.stack || e}`);
  await rig.stopAll();
  process.exit(1);
}
