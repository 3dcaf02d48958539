// The benchmark's MCP origin: answers every request with a small JSON-RPC result, as
// a stateless Streamable HTTP server answering tools/list would. ORIGIN_PORT.
import http from "node:http";

const body = JSON.stringify({ jsonrpc: "2.0", id: 1, result: { tools: [{ name: "echo", inputSchema: { type: "object" } }] } });
http
  .createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  })
  .listen(Number(process.env.ORIGIN_PORT), "127.0.0.1");
