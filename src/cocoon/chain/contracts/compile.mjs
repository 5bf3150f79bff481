// Compiles every contract entry point with @ton/tolk-js (version pinned in package.json) and writes
// build/<name>.json = {name, compiler, codeBoc64, codeHashHex}. Run through `make contracts`.
// A Python test recompiles and compares with the committed files.
import { runTolkCompiler, getTolkCompilerVersion } from "@ton/tolk-js";
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const CONTRACTS = ["wallet", "root", "proxy", "client", "worker"];
const outDir = process.argv[2] ?? join(here, "build");

const version = await getTolkCompilerVersion();
if (version !== "1.1.0") {
  console.error(`tolk ${version} found, 1.1.0 required (tonpy's TVM lacks the opcodes of newer versions)`);
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
let failed = false;
for (const name of CONTRACTS) {
  const result = await runTolkCompiler({
    entrypointFileName: `${name}.tolk`,
    fsReadCallback: (path) => {
      const full = join(here, path);
      if (!existsSync(full)) throw new Error(`cannot read ${path}`);
      return readFileSync(full, "utf-8");
    },
    optimizationLevel: 2,
  });
  if (result.status !== "ok") {
    console.error(`${name}: ${result.message}`);
    failed = true;
    continue;
  }
  const out = { name, compiler: `tolk ${version}`, codeBoc64: result.codeBoc64, codeHashHex: result.codeHashHex };
  writeFileSync(join(outDir, `${name}.json`), JSON.stringify(out, null, 2) + "\n");
  console.log(`${name}: ${result.codeHashHex}`);
}
process.exit(failed ? 1 : 0);
