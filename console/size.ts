/** Reports the size of the console's bundle, raw and gzipped (level 9, as a server or proxy would send it): `npm run console:size`. */
import { readdir, readFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";

const dist = new URL("dist/", import.meta.url);
let raw = 0;
let gzipped = 0;
for (const name of (await readdir(dist)).sort()) {
  const contents = await readFile(new URL(name, dist));
  const zipped = gzipSync(contents, { level: 9 }).byteLength;
  raw += contents.byteLength;
  gzipped += zipped;
  console.log(
    `${name.padEnd(14)} ${(contents.byteLength / 1024).toFixed(1).padStart(7)} KB  ${(zipped / 1024).toFixed(1).padStart(6)} KB gzipped`,
  );
}
console.log(`${"total".padEnd(14)} ${(raw / 1024).toFixed(1).padStart(7)} KB  ${(gzipped / 1024).toFixed(1).padStart(6)} KB gzipped`);
