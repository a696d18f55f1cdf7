#!/usr/bin/env node
// The `mynah` command: runs the compiled CLI (npm install builds dist/ via `prepare`).
import { main } from "../dist/cli/main.js";
main(process.argv).catch((err) => {
  process.stderr.write(`mynah: ${err?.message ?? err}\n`);
  process.exit(1);
});
