/** Runs one example: `npm run example -- publisher|consumer [options]`. */
const example = process.argv[2];
if (example !== "publisher" && example !== "consumer") {
  console.error("usage: npm run example -- publisher|consumer [--url URL] [--protocol connect|grpc|grpc-web] [--token TOKEN] [--count N]");
  process.exit(2);
}
await import(`./${example}.ts`);
