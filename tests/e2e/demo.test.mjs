// The README's run command stays true: the demo starts on ports of its own and the
// TypeScript SDK client completes the flow through it (`scripts/demo.mjs --check`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
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
