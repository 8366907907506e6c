import { setTimeout as sleep } from "node:timers/promises";
import type { JsonObject } from "@bufbuild/protobuf";
import { type CpuTimes, cpuPerMessage } from "./cpu.ts";
import type { BenchSubscription, BenchTopic, Driver } from "./driver.ts";
import { eventPayload } from "./payload.ts";

/** How long to measure, after how long a warm-up, and how to read the CPU time spent. */
export interface Timing {
  warmupMs: number;
  durationMs: number;
  /** Reads the parties' CPU times; the load generator is this process unless given. */
  cpu: (loadGeneratorPid?: number) => CpuTimes;
}

const batchSize = 100;
const topic = "bench";

/** Counts events and wakes those waiting for the count to change. */
class Counter {
  value = 0;
  private waiters: (() => void)[] = [];
  add(n: number) {
    this.value += n;
    for (const wake of this.waiters.splice(0)) wake();
  }
  changed() {
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

/**
 * Runs `loops` and measures, after the warm-up, the rate of each counter and
 * the CPU each party spent per count of `perMessage` (keys "cpu <party>").
 */
async function measure(
  timing: Timing,
  counters: Record<string, Counter>,
  perMessage: Counter,
  loops: ((running: () => boolean) => Promise<void>)[],
) {
  let running = true;
  const done = Promise.all(loops.map((loop) => loop(() => running)));
  await sleep(timing.warmupMs);
  const start = Object.fromEntries(Object.entries(counters).map(([name, counter]) => [name, counter.value]));
  const [cpuStart, messagesStart, started] = [timing.cpu(), perMessage.value, performance.now()];
  await sleep(timing.durationMs);
  const [cpuEnd, messages, seconds] = [timing.cpu(), perMessage.value - messagesStart, (performance.now() - started) / 1000];
  const rates = Object.fromEntries(
    Object.entries(counters).map(([name, counter]) => [name, (counter.value - (start[name] ?? 0)) / seconds]),
  );
  const cpu = Object.entries(cpuPerMessage(cpuStart, cpuEnd, messages)).map(([party, us]) => [`cpu ${party}`, us]);
  running = false;
  for (const counter of Object.values(counters)) counter.add(0);
  await done;
  return { rates, cpu: Object.fromEntries(cpu) };
}

// Publishers cycle through prepared batches, as a real publisher has its data ready.
const batches = Array.from({ length: 50 }, (_, b) => Array.from({ length: batchSize }, (_, n) => eventPayload(b * batchSize + n)));
let sequence = 0;
const batch = () => batches[sequence++ % batches.length] ?? [];

/** A variant of the pipeline: the topic's and the subscription's settings, and the batches its publishers send. */
export interface PipelineVariant {
  topic?: BenchTopic;
  orderingKey?: string;
  /** Makes one publisher's batch maker: each batch, and how many of its messages the topic keeps. */
  batches?: () => () => { messages: JsonObject[]; kept: number };
}

/**
 * Scenario A, the pipeline: one topic, one subscription, two publishers posting
 * batches of 100 and two consumers pulling batches of 100 and acking them.
 * With `backlog`, publishers pause while more than that many messages are unacked.
 */
export async function pipeline(driver: Driver, timing: Timing, backlog: number, variant: PipelineVariant = {}) {
  await driver.setup(topic, [{ id: "bench-a", filter: null, orderingKey: variant.orderingKey }], variant.topic);
  const published = new Counter();
  const kept = new Counter();
  const acked = new Counter();
  const publisherLoop = async (running: () => boolean) => {
    const publisher = await driver.publisher();
    const next = variant.batches?.() ?? (() => ({ messages: batch(), kept: batchSize }));
    while (running()) {
      if (kept.value - acked.value > backlog) {
        await acked.changed();
        continue;
      }
      const { messages, kept: keptCount } = next();
      await publisher.publish(messages);
      published.add(messages.length);
      kept.add(keptCount);
    }
    await publisher.close();
  };
  const consumerLoop = async (running: () => boolean) => {
    const consumer = await driver.consumer("bench-a");
    while (running()) {
      const messages = await consumer.consume(batchSize);
      if (messages.length === 0) {
        await sleep(1);
        continue;
      }
      await consumer.ack(messages.map((message) => message.id));
      acked.add(messages.length);
    }
    await consumer.close();
  };
  const loops = [publisherLoop, publisherLoop, consumerLoop, consumerLoop];
  const { rates, cpu } = await measure(timing, { published, acked }, acked, loops);
  return { "delivered+acked msg/s": rates.acked ?? 0, "published msg/s": rates.published ?? 0, ...cpu };
}

// The ordered pipeline's batches: the same events, each with one of 1,000 accounts, its ordering value.
const orderedBatches = batches.map((messages, b) =>
  messages.map((message, n) => ({ ...message, account: String((b * batchSize + n) % 1000) })),
);

/** Scenario A-ordered: the pipeline on a subscription ordered by `account`, 1,000 distinct values. */
export function orderedPipeline(driver: Driver, timing: Timing) {
  return pipeline(driver, timing, 2000, {
    orderingKey: "account",
    batches: () => {
      let next = 0;
      return () => ({ messages: orderedBatches[next++ % orderedBatches.length] ?? [], kept: batchSize });
    },
  });
}

/**
 * Scenario A-dedup: the pipeline on a topic de-duplicated by `event_id`, where every tenth message
 * repeats the event_id of one its publisher sent 95 messages before (so 10 % are dropped).
 */
export function dedupPipeline(driver: Driver, timing: Timing) {
  return pipeline(driver, timing, 2000, {
    topic: { dedupKey: "event_id" },
    batches: () => {
      const publisher = Math.random().toString(36).slice(2, 8);
      let n = 0;
      return () => {
        let kept = 0;
        const messages = batch().map((message) => {
          const duplicate = n % 10 === 9 && n >= 95;
          if (!duplicate) kept++;
          return { ...message, event_id: `${publisher}-${duplicate ? n++ - 95 : n++}` };
        });
        return { messages, kept };
      };
    },
  });
}

/** Scenario B, fan-out: one topic, five subscriptions (one filtered on country BR or US), two publishers. */
export async function fanOut(driver: Driver, timing: Timing) {
  const subscriptions: BenchSubscription[] = [
    { id: "bench-b1", filter: null },
    { id: "bench-b2", filter: null },
    { id: "bench-b3", filter: null },
    { id: "bench-b4", filter: null },
    { id: "bench-b5", filter: { country: ["BR", "US"] } },
  ];
  await driver.setup(topic, subscriptions);
  const published = new Counter();
  const routed = new Counter();
  const publisherLoop = async (running: () => boolean) => {
    const publisher = await driver.publisher();
    while (running()) {
      const messages = batch();
      await publisher.publish(messages);
      published.add(messages.length);
      routed.add(messages.length * 4 + messages.filter((message) => message.country === "BR" || message.country === "US").length);
    }
    await publisher.close();
  };
  const { rates, cpu } = await measure(timing, { published, routed }, published, [publisherLoop, publisherLoop]);
  return { "published msg/s": rates.published ?? 0, "routed rows/s": rates.routed ?? 0, ...cpu };
}

/**
 * Scenario C, latency: one message at a time, published while a consumer is
 * already asking for it (polling, long-polling or streaming, as the driver
 * does); publish-to-receive times.
 */
export async function latency(driver: Driver, count: number) {
  await driver.setup(topic, [{ id: "bench-c", filter: null }]);
  const publisher = await driver.publisher();
  const consumer = await driver.consumer("bench-c");
  const samples: number[] = [];
  let received: ((at: number) => void) | undefined;
  let running = true;
  const consuming = (async () => {
    while (running) {
      const messages = await consumer.consume(10);
      if (messages.length === 0) continue;
      received?.(performance.now());
      await consumer.ack(messages.map((message) => message.id));
    }
  })();
  for (let n = 0; n < count + 50; n++) {
    const arrival = new Promise<number>((resolve) => {
      received = resolve;
    });
    const sent = performance.now();
    await publisher.publish([{ ...eventPayload(n), sent }]);
    const at = await arrival;
    if (n >= 50) samples.push(at - sent);
  }
  running = false;
  await consuming;
  await publisher.close();
  await consumer.close();
  samples.sort((a, b) => a - b);
  const percentile = (p: number) => samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))] ?? 0;
  return { "p50 ms": percentile(50), "p99 ms": percentile(99) };
}
