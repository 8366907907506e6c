import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { TopicSchema, type TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import type { Database } from "../db/database.ts";
import * as messages from "../db/messages.ts";
import { pageOf } from "../db/page.ts";
import * as topics from "../db/topics.ts";
import type { Waiting } from "../waiting/waiting.ts";

/** A de-duplicated topic's window when CreateTopic leaves it unset. */
const defaultDedupWindowSeconds = 600;

// How far deliver_at may be from now: a clock a little behind the server's is not an error; a year is delay_seconds' limit too.
const deliverAtPastMs = 60_000;
const deliverAtFutureMs = 31_536_000_000;

/** Converts a topics row into the API's Topic; the de-duplication fields only when set. */
export function topicFromRow(row: topics.TopicRow) {
  return create(TopicSchema, {
    id: row.id,
    createdAt: timestampFromMs(row.created_at),
    dedupKey: row.dedup_key ?? undefined,
    dedupWindowSeconds: row.dedup_window_seconds ?? undefined,
  });
}

/**
 * When a publish's messages become available: undefined for now, else the time that
 * `delay_seconds` or `deliver_at` gives. Refuses both together, and a deliver_at more than a
 * minute in the past or more than a year ahead.
 */
function availableAtOf(request: { delaySeconds?: number; deliverAt?: Timestamp }, nowMs = Date.now()): Date | undefined {
  const { delaySeconds, deliverAt } = request;
  if (delaySeconds !== undefined && deliverAt !== undefined) {
    throw new ConnectError("delay_seconds and deliver_at cannot both be set", Code.InvalidArgument);
  }
  if (deliverAt !== undefined) {
    const at = timestampDate(deliverAt);
    if (!(at.getTime() >= nowMs - deliverAtPastMs && at.getTime() <= nowMs + deliverAtFutureMs)) {
      throw new ConnectError("deliver_at must be at most a minute in the past and at most a year ahead", Code.InvalidArgument);
    }
    return at;
  }
  // 0 is "now": the statement then stays the one of an undelayed publish.
  return delaySeconds ? new Date(nowMs + delaySeconds * 1000) : undefined;
}

/** Implements TopicService over the database; a publish wakes the consumers that wait on the topic. */
export function createTopicService(db: Database, waiting: Waiting): ServiceImpl<typeof TopicService> {
  return {
    async createTopic(request) {
      const { dedupKey, dedupWindowSeconds } = request;
      if (dedupKey === undefined && dedupWindowSeconds !== undefined) {
        throw new ConnectError("dedup_window_seconds needs dedup_key", Code.InvalidArgument);
      }
      const dedup = dedupKey === undefined ? undefined : { key: dedupKey, windowSeconds: dedupWindowSeconds ?? defaultDedupWindowSeconds };
      return topicFromRow(await topics.createTopic(db.pool, request.id, dedup));
    },
    async getTopic(request) {
      return topicFromRow(await topics.getTopic(db.pool, request.id));
    },
    async listTopics(request) {
      const { offset, limit } = pageOf(request);
      return { data: (await topics.listTopics(db.pool, offset, limit)).map(topicFromRow) };
    },
    async deleteTopic(request) {
      await topics.deleteTopic(db.pool, request.id);
      return {};
    },
    async publishMessages(request) {
      const availableAt = availableAtOf(request);
      const routed = await messages.publishMessages(db.queue, request.topicId, request.messages, availableAt);
      if (routed > 0) waiting.published(request.topicId, availableAt?.getTime());
      return {};
    },
  };
}
