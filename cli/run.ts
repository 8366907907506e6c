#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=16 --initial-old-space-size=64 --max-old-space-size=384
import { execute } from "@oclif/core";

if (Number(process.versions.node.split(".")[0]) < 24) {
  process.stderr.write(`fastpubsub needs Node 24 (this is ${process.version}); run it through npm or npx from the project folder.\n`);
  process.exit(1);
}

await execute({ dir: import.meta.url });
