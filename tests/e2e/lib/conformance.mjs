// Reading what `conformance server -o DIR` (@modelcontextprotocol/conformance) wrote.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

/** Every check of a `conformance server` run: "scenario/check" -> status. */
export function checks(dir) {
  const out = new Map();
  for (const d of readdirSync(dir)) {
    const scenario = d.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT.*$/, "");
    for (const c of JSON.parse(readFileSync(path.join(dir, d, "checks.json"), "utf8"))) out.set(`${scenario}/${c.id}`, c.status);
  }
  return out;
}

