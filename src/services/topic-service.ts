import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { TopicSchema, type TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import type { Database } from "../db/database.ts";
import * as messages from "../db/messages.ts";
import { pageOf } from "../db/page.ts";
import * as topics from "../db/topics.ts";
import type { Waiting } from "../waiting/waiting.ts";

/** Converts a topics row into the API's Topic. */
export function topicFromRow(row: topics.TopicRow) {
  return create(TopicSchema, { id: row.id, createdAt: timestampFromMs(row.created_at) });
}

/** Implements TopicService over the database; a publish wakes the consumers that wait on the topic. */
export function createTopicService(db: Database, waiting: Waiting): ServiceImpl<typeof TopicService> {
  return {
    async createTopic(request) {
      return topicFromRow(await topics.createTopic(db.pool, request.id));
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
      const routed = await messages.publishMessages(db.queue, request.topicId, request.messages);
      if (routed > 0) waiting.published(request.topicId);
      return {};
    },
  };
}
