// An MCP origin for the scope-policy suite, built on the official TypeScript SDK's
// low-level Server with stateful Streamable HTTP sessions and the SDK's in-memory
// an event store (so streams can be resumed with Last-Event-ID).
//   POST/GET/DELETE /mcp  MCP. The session's answer mode is chosen on initialize by the
//                         request header x-origin-mode: "json" (application/json answers)
//                         or "sse" (text/event-stream, the default). Lists are paginated,
//                         two items a page; in SSE mode every list answer is preceded by a
//                         notifications/message on the same stream.
//   POST /mcp/echo        JSON of the body exactly as the origin received it (base64)
//   POST /mcp/slow-list   an SSE answer to the tools/list request in the body: a
//                         notification, then, once POST /release arrives (or after 20 s),
//                         the list answer, in CRLF line endings split mid-line
// Setting: ORIGIN_PORT.
import http from "node:http";
import { randomUUID } from "node:crypto";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  ListToolsRequestSchema,
  CallToolRequestSchema,
  ListResourcesRequestSchema,
  ReadResourceRequestSchema,
  ListPromptsRequestSchema,
  GetPromptRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const port = Number(process.env.ORIGIN_PORT);
const TOOLS = ["echo", "read_file", "delete_repo", "admin_purge", "工具"];
const RESOURCES = ["file:///public/readme.md", "file:///secret/keys.txt", "file:///public/notes.md"];
const PROMPTS = ["greet", "admin_prompt"];
const PAGE = 2;

function page(items, cursor) {
  const start = cursor ? Number(cursor) : 0;
  const next = start + PAGE < items.length ? String(start + PAGE) : undefined;
  return { slice: items.slice(start, start + PAGE), next };
}

function mcpServer(mode) {
  const server = new Server(
    { name: "policy-origin", version: "1.0.0" },
    { capabilities: { tools: {}, resources: {}, prompts: {}, logging: {} } },
  );
  const note = async (extra, what) => {
    if (mode === "sse") {
      await extra.sendNotification({ method: "notifications/message", params: { level: "info", data: `listing ${what}` } });
    }
  };
  server.setRequestHandler(ListToolsRequestSchema, async (req, extra) => {
    await note(extra, "tools");
    const { slice, next } = page(TOOLS, req.params?.cursor);
    return {
      tools: slice.map((name) => ({
        name,
        description: `the ${name} tool`,
        inputSchema: { type: "object", properties: { z: { type: "string" }, a: { type: "string" } } },
      })),
      ...(next ? { nextCursor: next } : {}),
    };
  });
  server.setRequestHandler(CallToolRequestSchema, async (req) => ({
    content: [{ type: "text", text: `called ${req.params.name}` }],
  }));
  server.setRequestHandler(ListResourcesRequestSchema, async (req, extra) => {
    await note(extra, "resources");
    const { slice, next } = page(RESOURCES, req.params?.cursor);
    return { resources: slice.map((uri) => ({ uri, name: uri.split("/").pop() })), ...(next ? { nextCursor: next } : {}) };
  });
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => ({
    contents: [{ uri: req.params.uri, text: `contents of ${req.params.uri}` }],
  }));
  server.setRequestHandler(ListPromptsRequestSchema, async (req, extra) => {
    await note(extra, "prompts");
    const { slice, next } = page(PROMPTS, req.params?.cursor);
    return { prompts: slice.map((name) => ({ name })), ...(next ? { nextCursor: next } : {}) };
  });
  server.setRequestHandler(GetPromptRequestSchema, async (req) => ({
    messages: [{ role: "user", content: { type: "text", text: `prompt ${req.params.name}` } }],
  }));
  return server;
}

// The SDK's example InMemoryEventStore orders events by "<stream>_<ms>_<random>",
// which misorders two events stored in the same millisecond; this one keeps order.
class OrderedEventStore {
  constructor() {
    this.events = [];
  }
  async storeEvent(streamId, message) {
    const eventId = `${streamId}_${String(this.events.length).padStart(8, "0")}`;
    this.events.push({ eventId, streamId, message });
    return eventId;
  }
  async getStreamIdForEventId(eventId) {
    return this.events.find((e) => e.eventId === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const at = this.events.findIndex((e) => e.eventId === lastEventId);
    if (at < 0) return "";
    const { streamId } = this.events[at];
    for (const e of this.events.slice(at + 1)) if (e.streamId === streamId) await send(e.eventId, e.message);
    return streamId;
  }
}

const sessions = new Map();
let release = () => {};

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

const httpServer = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://origin");
  try {
    if (url.pathname === "/mcp/echo") {
      const body = await readBody(req);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ bodyBase64: body.toString("base64"), headers: req.headers }));
      return;
    }
    if (url.pathname === "/release") {
      release();
      res.writeHead(204).end();
      return;
    }
    if (url.pathname === "/mcp/slow-list") {
      const { id } = JSON.parse((await readBody(req)).toString("utf8"));
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write(`id: s1\r\nevent: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\r\n\r\n`);
      await new Promise((r) => {
        release = r;
        setTimeout(r, 20_000);
      });
      const tools = TOOLS.map((name) => ({ name, inputSchema: { type: "object" } }));
      const answer = `id: s2\r\nevent: message\r\ndata: ${JSON.stringify({ jsonrpc: "2.0", id, result: { tools } })}\r\n\r\n`;
      res.write(answer.slice(0, 40));
      await new Promise((r) => setTimeout(r, 50));
      res.end(answer.slice(40));
      return;
    }
    if (url.pathname !== "/mcp") {
      res.writeHead(404).end();
      return;
    }
    const raw = req.method === "POST" ? (await readBody(req)).toString("utf8") : "";
    const body = raw ? JSON.parse(raw) : undefined;
    const id = req.headers["mcp-session-id"];
    let transport = id && sessions.get(id);
    if (!transport) {
      if (req.method !== "POST" || body?.method !== "initialize") {
        res.writeHead(id ? 404 : 400, { "content-type": "application/json" });
        res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: "no such session" } }));
        return;
      }
      const mode = req.headers["x-origin-mode"] === "json" ? "json" : "sse";
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: mode === "json",
        eventStore: new OrderedEventStore(),
        onsessioninitialized: (sid) => sessions.set(sid, transport),
      });
      await mcpServer(mode).connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (e) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: String(e) }));
  }
});
httpServer.listen(port, "127.0.0.1", () => console.log(`policy origin on 127.0.0.1:${port}`));
