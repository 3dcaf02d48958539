// The README's run command stays true: the demo starts on ports of its own and the
// TypeScript SDK client completes the flow through it (`scripts/demo.mjs --check`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";
import * as rig from "./lib/rig.mjs";

test("the demo runs and an MCP client can use it", async () => {
  rig.buildWorker();
  const env = {
    ...process.env,
    DEMO_PORT: String(await rig.freePort()),
    DEMO_ORIGIN_PORT: String(await rig.freePort()),
    DEMO_AS_PORT: String(await rig.freePort()),
  };
  const { stdout } = await promisify(execFile)(process.execPath, ["scripts/demo.mjs", "--check"], { cwd: rig.root, env, timeout: 180_000 });
  assert.match(stdout, new RegExp(`MCP endpoint \\(point your MCP client here\\):\\s+http://127.0.0.1:${env.DEMO_PORT}/mcp`));
  assert.match(stdout, /check: OAuth flow done, \d+ tools listed, echo said: Echo: hello from the demo/);
});

async function refused(p) {
  return new Promise((resolve) => {
    const s = net.connect(p, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(false)));
    s.once("error", () => resolve(true));
  });
}

for (const signal of ["SIGTERM", "SIGHUP"]) {
  test(`stopped with ${signal}, the demo stops everything it started`, async () => {
    const ports = [await rig.freePort(), await rig.freePort(), await rig.freePort()];
    const env = { ...process.env, DEMO_PORT: String(ports[0]), DEMO_ORIGIN_PORT: String(ports[1]), DEMO_AS_PORT: String(ports[2]) };
    const demo = spawn(process.execPath, ["scripts/demo.mjs"], { cwd: rig.root, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    demo.stdout.on("data", (d) => (out += d));
    demo.stderr.on("data", (d) => (out += d));
    const deadline = Date.now() + 120_000;
    while (!out.includes("demo is running") && Date.now() < deadline && demo.exitCode === null) await new Promise((r) => setTimeout(r, 200));
    assert.match(out, /demo is running/);
    for (const p of ports) assert.equal(await refused(p), false, `port ${p} serves while the demo runs`);
    const exited = new Promise((r) => demo.once("exit", r));
    demo.kill(signal);
    await exited;
    for (let i = 0; i < 25 && !(await Promise.all(ports.map(refused))).every(Boolean); i++) await new Promise((r) => setTimeout(r, 200));
    for (const p of ports) assert.equal(await refused(p), true, `port ${p} is free after ${signal}`);
  });
}

test("a start on a busy port says which port and what to do", async () => {
  const busy = net.createServer().listen(0, "127.0.0.1");
  await new Promise((r) => busy.once("listening", r));
  const port = busy.address().port;
  const env = { ...process.env, DEMO_PORT: String(port), DEMO_ORIGIN_PORT: String(await rig.freePort()), DEMO_AS_PORT: String(await rig.freePort()) };
  const result = await promisify(execFile)(process.execPath, ["scripts/demo.mjs"], { cwd: rig.root, env, timeout: 30_000 }).catch((e) => e);
  busy.close();
  assert.equal(result.code, 1);
  assert.match(result.stderr, new RegExp(`port ${port} \\(the worker\\) is in use.*DEMO_PORT=`));
});
