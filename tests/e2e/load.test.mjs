// A bounded load test through the real worker (the wasm bundled as `wrangler deploy`
// bundles it, under workerd itself: under wrangler dev, its local proxy answered 2 of
// 3,000 requests on a busy machine with its own 503 "Your worker restarted
// mid-request" while the worker logged nothing for them):
// 50 concurrent clients, each with its own token, 3,000 MCP requests in all, half
// answered as JSON and half as event streams by an in-process origin. Every answer
// must be the one for its request (id and nonce), with zero lost, zero mismatched,
// zero 5xx. Correctness under load, not speed: throughput and workerd's RSS (after a
// warm-up and at the end) are printed, not asserted. Under wrangler dev, RSS grows
// with every request for any worker (a JS pass-through grew 200 -> 338 MiB over 6,000
// requests, this worker 213 -> 331 MiB in the same setup), so memory stability is
// not judged here.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as rig from "./lib/rig.mjs";

const CLIENTS = 50;
const PER_CLIENT = Number(process.env.LOAD_PER_CLIENT || 60);
let base, keys, origin, wPort, worker;

before(async () => {
  rig.buildWorker();
  const [asPort, oPort] = await Promise.all([rig.freePort(), rig.freePort()]);
  wPort = await rig.freePort();
  base = `http://127.0.0.1:${wPort}`;
  keys = await rig.makeKeys();
  origin = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const msg = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const answer = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result: { nonce: msg.params.nonce, who: req.headers["x-auth-subject"] } });
      if (msg.id % 2) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(`id: ${msg.id}-0\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":0}}\n\n`);
        setTimeout(() => res.end(`id: ${msg.id}-1\ndata: ${answer}\n\n`), 2);
      } else {
        res.writeHead(200, { "content-type": "application/json" }).end(answer);
      }
    });
  });
  origin.keepAliveTimeout = 30_000;
  await new Promise((r) => origin.listen(oPort, "127.0.0.1", r));
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys });
  worker = await rig.startWorkerd({ port: wPort, vars: { ...rig.singleHostVars(base, oPort, asPort), SCOPES_SUPPORTED: "mcp:tools", REQUIRED_SCOPES: "mcp:tools", LOG_LEVEL: "warn" } });
});

after(async () => {
  origin?.close();
  await rig.stopAll();
});

/** RSS (KiB) of the workerd process serving the worker's port. */
function workerdRss() {
  const line = execFileSync("ss", ["-ltnp"], { encoding: "utf8" })
    .split("\n")
    .find((l) => l.includes(`127.0.0.1:${wPort} `));
  const pid = line && /pid=(\d+)/.exec(line)?.[1];
  if (!pid) return null;
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
}

test("50 clients, 3,000 requests, JSON and SSE: nothing lost, nothing mismatched, no 5xx", async () => {
  const now = Math.floor(Date.now() / 1000);
  const tokens = await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) =>
      rig.signToken(keys, i % 2 ? "ES256" : "RS256", { iss: `${base}/oidc`, aud: `${base}/mcp`, sub: `user-${i}`, client_id: `client-${i % 5}`, scope: "mcp:tools", iat: now, exp: now + 3600 }),
    ),
  );
  const tally = { ok: 0, lost: 0, mismatched: 0, server: 0, other: 0, sse: 0, json: 0 };
  // Every failure, with what the client saw, to be explained with the worker's log.
  const failures = [];
  const logStart = worker.output.length;
  let rssWarm = null;
  let done = 0;
  async function one(client, n) {
    const id = client * 1000 + n;
    const nonce = `${client}-${n}-${Math.random().toString(36).slice(2)}`;
    let res;
    try {
      res = await fetch(`${base}/mcp`, {
        method: "POST",
        headers: { authorization: `Bearer ${tokens[client]}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
        body: JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "echo", nonce } }),
      });
    } catch (e) {
      tally.lost++;
      failures.push({ id, at: Date.now() - started, error: String(e?.cause?.message || e?.message || e) });
      return;
    }
    if (res.status !== 200) {
      if (res.status >= 500) tally.server++;
      else tally.other++;
      const body = await res.text().catch((e) => `(body unreadable: ${e.message})`);
      failures.push({ id, at: Date.now() - started, status: res.status, body: body.slice(0, 300) });
      return;
    }
    const type = res.headers.get("content-type") || "";
    let text;
    try {
      text = await res.text();
    } catch (e) {
      tally.lost++;
      failures.push({ id, at: Date.now() - started, error: `body: ${e?.message || e}` });
      return;
    }
    let answer;
    if (type.startsWith("text/event-stream")) {
      tally.sse++;
      const data = text.split("\n").filter((l) => l.startsWith("data: ")).map((l) => JSON.parse(l.slice(6)));
      answer = data.find((m) => "result" in m);
    } else {
      tally.json++;
      answer = JSON.parse(text);
    }
    if (answer?.id === id && answer.result.nonce === nonce && answer.result.who === `user-${client}`) tally.ok++;
    else {
      tally.mismatched++;
      failures.push({ id, at: Date.now() - started, mismatched: text.slice(0, 300) });
    }
  }
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, client) => {
      for (let n = 0; n < PER_CLIENT; n++) {
        await one(client, n);
        if (++done === 500) rssWarm = workerdRss();
        if (process.env.LOAD_TRACE && done % 1500 === 0) console.log(`load: after ${done}: workerd RSS ${workerdRss()} KiB`);
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  const rssEnd = workerdRss();
  const total = CLIENTS * PER_CLIENT;
  console.log(
    `load: ${total} requests from ${CLIENTS} clients in ${seconds.toFixed(1)} s (${(total / seconds).toFixed(0)} req/s, workerd itself); ` +
      `ok ${tally.ok}, lost ${tally.lost}, mismatched ${tally.mismatched}, 5xx ${tally.server}, other ${tally.other}; ` +
      `JSON ${tally.json}, SSE ${tally.sse}; workerd RSS after 500: ${rssWarm} KiB, at the end: ${rssEnd} KiB`,
  );
  if (failures.length) {
    // What the client saw for each failure, then every line the worker (or workerd)
    // logged about a failure during the run.
    console.log(`load: ${failures.length} failure(s):`);
    for (const f of failures) console.log(`  ${JSON.stringify(f)}`);
    const lines = worker.output
      .slice(logStart)
      .split("\n")
      .filter((l) => /"status":5\d\d|\[wrangler:(error|warn)\]|restarted|Error|error:/.test(l));
    console.log(`load: worker and proxy log lines about failures (${lines.length}):\n  ${lines.join("\n  ")}`);
  }
  assert.equal(tally.lost, 0, "lost");
  assert.equal(tally.mismatched, 0, "mismatched");
  assert.equal(tally.server, 0, "5xx");
  assert.equal(tally.other, 0, "other statuses");
  assert.equal(tally.ok, total);
  assert.ok(tally.sse > 0 && tally.json > 0);
});
