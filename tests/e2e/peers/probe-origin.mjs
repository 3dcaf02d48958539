// An MCP origin for the end-to-end suite, built on the official TypeScript SDK server
// (stateless Streamable HTTP), plus two plain endpoints under the protected path:
//   POST/GET /mcp            MCP: tools "echo" and "whoami" (the identity headers it received)
//   ANY /mcp/echo            JSON of the request as the origin saw it (method, query, headers, body length)
//   GET /mcp/stream?n=&gap=  an SSE stream of n events, gap ms apart; /mcp/stream-log tells
//                            when the last stream finished, so a test can prove it saw the
//                            first event before the origin was done
// Setting: ORIGIN_PORT.
import http from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const port = Number(process.env.ORIGIN_PORT);
let lastStreamFinishedAt = 0;

function mcpServer(req) {
  const server = new McpServer({ name: "probe-origin", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Echo a message", inputSchema: { message: z.string() } },
    async ({ message }) => ({ content: [{ type: "text", text: `Echo: ${message}` }] }),
  );
  server.registerTool("whoami", { description: "The identity the edge sent" }, async () => ({
    content: [
      {
        type: "text",
        text: JSON.stringify({
          subject: req.headers["x-auth-subject"] ?? null,
          client: req.headers["x-auth-client-id"] ?? null,
          scopes: req.headers["x-auth-scopes"] ?? null,
          authorization: req.headers["authorization"] ?? null,
        }),
      },
    ],
  }));
  return server;
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://origin");
  try {
    if (url.pathname === "/mcp/echo") {
      const body = await readBody(req);
      res.writeHead(200, { "content-type": "application/json", "mcp-session-id": "echo-session" });
      res.end(JSON.stringify({ method: req.method, path: url.pathname, query: url.search, headers: req.headers, bodyLength: body.length, body: body.toString("utf8").slice(0, 200) }));
      return;
    }
    if (url.pathname === "/mcp/stream") {
      const n = Number(url.searchParams.get("n") || 5);
      const gap = Number(url.searchParams.get("gap") || 200);
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      for (let i = 0; i < n; i++) {
        res.write(`id: ${i}\nevent: message\ndata: {"i":${i}}\n\n`);
        await new Promise((r) => setTimeout(r, gap));
      }
      lastStreamFinishedAt = Date.now();
      res.end();
      return;
    }
    if (url.pathname === "/mcp/stream-log") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ lastStreamFinishedAt }));
      return;
    }
    if (url.pathname === "/mcp") {
      const body = req.method === "POST" ? JSON.parse((await readBody(req)).toString("utf8") || "null") : undefined;
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      const mcp = mcpServer(req);
      res.on("close", () => {
        transport.close();
        mcp.close();
      });
      await mcp.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }
    res.writeHead(404).end();
  } catch (e) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: String(e) }));
  }
});
server.listen(port, "127.0.0.1", () => console.log(`probe origin on 127.0.0.1:${port}`));
