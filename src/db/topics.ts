import { sql } from "slonik";
import { z } from "zod";
import type { DatabaseConnection } from "./pool.ts";

/** A row of the topics table. */
export const TopicRow = z.object({
  id: z.string(),
  created_at: z.number(), // ms since epoch: slonik's timestamptz parser
  dedup_key: z.string().nullable(),
  dedup_window_seconds: z.number().nullable(),
});
export type TopicRow = z.infer<typeof TopicRow>;

/** How a new topic de-duplicates its publishing: by a payload key, within a window. */
export interface Dedup {
  key: string;
  windowSeconds: number;
}

/** Inserts a topic, de-duplicated when `dedup` is given; FP409 when the id is taken. */
export function createTopic(db: DatabaseConnection, id: string, dedup?: Dedup) {
  return db.one(sql.type(TopicRow)`SELECT * FROM create_topic(${id}, ${dedup?.key ?? null}, ${dedup?.windowSeconds ?? null})`);
}

/** Returns one topic; FP404 when there is none. */
export function getTopic(db: DatabaseConnection, id: string) {
  return db.one(sql.type(TopicRow)`SELECT * FROM get_topic(${id})`);
}

/** Returns a page of topics ordered by id. */
export function listTopics(db: DatabaseConnection, offset: number, limit: number) {
  return db.any(sql.type(TopicRow)`SELECT * FROM list_topics(${offset}, ${limit})`);
}

/** Deletes a topic and its subscriptions; FP404 when there is none. */
export async function deleteTopic(db: DatabaseConnection, id: string) {
  await db.query(sql.unsafe`SELECT delete_topic(${id})`);
}
