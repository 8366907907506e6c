import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ClientSchema, type ClientService } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { generateSecret, hashSecret } from "../auth/client-secrets.ts";
import * as clients from "../db/clients.ts";
import { pageOf } from "../db/page.ts";
import type { DatabaseConnection } from "../db/pool.ts";

/** Converts a clients row into the API's Client; the secret's hash never leaves. */
export function clientFromRow(row: clients.ClientRow) {
  return create(ClientSchema, {
    id: row.id,
    name: row.name,
    scopes: row.scopes,
    isActive: row.is_active,
    tokenVersion: row.token_version,
    createdAt: timestampFromMs(row.created_at),
    updatedAt: timestampFromMs(row.updated_at),
  });
}

/** A UUIDv7: 48 bits of the time in ms, then random bits; clients list by age. */
function uuidv7(): string {
  const bytes = randomBytes(16);
  bytes.writeUIntBE(Date.now(), 0, 6);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x70;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A client's settings as stored: name and scopes without surrounding white space, active unless said otherwise. */
function settingsOf(request: { name: string; scopes: string; isActive?: boolean }): clients.ClientSettings {
  return { name: request.name.trim(), scopes: request.scopes.trim(), isActive: request.isActive ?? true };
}

/** Registers a client with a new random secret; returns its id and the secret, which is stored only hashed. */
export async function registerClient(db: DatabaseConnection, request: { name: string; scopes: string; isActive?: boolean }) {
  const secret = generateSecret();
  const row = await clients.createClient(db, uuidv7(), settingsOf(request), await hashSecret(secret));
  return { id: row.id, secret };
}

/** Implements ClientService over the database. */
export function createClientService(db: DatabaseConnection): ServiceImpl<typeof ClientService> {
  return {
    async createClient(request) {
      return registerClient(db, request);
    },
    async getClient(request) {
      return clientFromRow(await clients.getClient(db, request.id));
    },
    async listClients(request) {
      const { offset, limit } = pageOf(request);
      return { data: (await clients.listClients(db, offset, limit)).map(clientFromRow) };
    },
    async updateClient(request) {
      return clientFromRow(await clients.updateClient(db, request.id, settingsOf(request)));
    },
    async deleteClient(request) {
      await clients.deleteClient(db, request.id);
      return {};
    },
  };
}
