#!/usr/bin/env node
// Validates an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser,
// installed by `scripts/asyncapi.sh install`, which prints the ASYNCAPI_PARSER directory).
//
// Usage: ASYNCAPI_PARSER=<dir> node scripts/asyncapi-validate.mjs [FILE]   (stdin without FILE)
// Prints every diagnostic on stderr; exits 1 when there is an error, 2 on bad usage.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const dir = process.env.ASYNCAPI_PARSER;
if (!dir) {
  console.error("ASYNCAPI_PARSER is not set: run `scripts/asyncapi.sh install` and export the line it prints");
  process.exit(2);
}
const require = createRequire(join(dir, "package.json"));
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const file = process.argv[2];
const text = readFileSync(file ?? 0, "utf8");
const source = file ?? "stdin";

const { document, diagnostics } = await new Parser().parse(text, { source });
const names = { [DiagnosticSeverity.Error]: "error", [DiagnosticSeverity.Warning]: "warning" };
let errors = 0;
for (const d of diagnostics) {
  const severity = names[d.severity] ?? "info";
  if (d.severity === DiagnosticSeverity.Error) errors += 1;
  const at = d.path && d.path.length ? ` at /${d.path.join("/")}` : "";
  console.error(`${severity}${at}: ${d.message} [${d.code}]`);
}
if (errors > 0 || document === undefined) {
  console.error(`${source}: not a valid AsyncAPI document (${errors} errors)`);
  process.exit(1);
}
console.error(`${source}: valid AsyncAPI ${document.version()}`);
