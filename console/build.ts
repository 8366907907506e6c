/**
 * Builds the console's browser bundle, console/dist/console.js and console.css,
 * from console/src with esbuild: `npm run console:build`. The output is checked
 * in, as gen/ is, so that the server needs no build step; `--check` (run by CI
 * and by test/server/console.test.ts) fails when the checked-in files differ
 * from a fresh build.
 */
import { readFile, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const dist = new URL("dist/", import.meta.url);

/** Builds the bundle in memory and returns each output file's name and contents. */
export async function buildConsole(): Promise<Map<string, Uint8Array>> {
  const result = await esbuild.build({
    entryPoints: [fileURLToPath(new URL("src/main.tsx", import.meta.url))],
    outdir: fileURLToPath(dist),
    entryNames: "console",
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    jsx: "automatic",
    jsxImportSource: "preact",
    // No source maps and no absolute paths in the output: it must be the same on every machine.
    sourcemap: false,
    legalComments: "none",
    charset: "utf8",
    write: false,
    logLevel: "silent",
  });
  return new Map(result.outputFiles.map((file) => [basename(file.path), file.contents]));
}

/** The names of the checked-in files that differ from a fresh build. */
export async function staleConsoleFiles(): Promise<string[]> {
  const stale: string[] = [];
  for (const [name, contents] of await buildConsole()) {
    const current = await readFile(new URL(name, dist)).catch(() => undefined);
    if (!current || Buffer.compare(current, contents) !== 0) stale.push(`console/dist/${name}`);
  }
  return stale;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes("--check")) {
    const stale = await staleConsoleFiles();
    if (stale.length > 0) {
      console.error(`${stale.join(", ")} stale: run 'npm run console:build' and commit the result`);
      process.exit(1);
    }
  } else {
    for (const [name, contents] of await buildConsole()) await writeFile(new URL(name, dist), contents);
  }
}
