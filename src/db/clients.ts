import { sql } from "slonik";
import { z } from "zod";
import type { DatabaseConnection } from "./pool.ts";

/** A row of the clients table. */
export const ClientRow = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.string(),
  is_active: z.boolean(),
  secret_hash: z.string(),
  token_version: z.number(),
  created_at: z.number(),
  updated_at: z.number(),
});
export type ClientRow = z.infer<typeof ClientRow>;

/** A client's settings. */
export interface ClientSettings {
  name: string;
  scopes: string;
  isActive: boolean;
}

/** Inserts a client with the given id and secret hash. */
export function createClient(db: DatabaseConnection, id: string, settings: ClientSettings, secretHash: string) {
  return db.one(sql.type(ClientRow)`
    SELECT * FROM create_client(${id}, ${settings.name}, ${settings.scopes}, ${settings.isActive}, ${secretHash})
  `);
}

/** Returns one client; FP404 when there is none. */
export function getClient(db: DatabaseConnection, id: string) {
  return db.one(sql.type(ClientRow)`SELECT * FROM get_client(${id})`);
}

/** Returns a page of clients ordered by id. */
export function listClients(db: DatabaseConnection, offset: number, limit: number) {
  return db.any(sql.type(ClientRow)`SELECT * FROM list_clients(${offset}, ${limit})`);
}

/** Replaces a client's settings and revokes its tokens; FP404 when there is none. */
export function updateClient(db: DatabaseConnection, id: string, settings: ClientSettings) {
  return db.one(sql.type(ClientRow)`
    SELECT * FROM update_client(${id}, ${settings.name}, ${settings.scopes}, ${settings.isActive})
  `);
}

/** Deletes a client and revokes its tokens; FP404 when there is none. */
export async function deleteClient(db: DatabaseConnection, id: string) {
  await db.query(sql.unsafe`SELECT delete_client(${id})`);
}

const TokenStateRow = z.object({ id: z.string(), is_active: z.boolean(), token_version: z.number() });

/** Returns whether a client may use its tokens and which token_version they must carry; null for a missing client. */
export function getClientTokenState(db: DatabaseConnection, id: string) {
  return db.maybeOne(sql.type(TokenStateRow)`SELECT * FROM client_token_states(${sql.array([id], "uuid")})`);
}
