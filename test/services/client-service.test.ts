import { toJsonString } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientSchema } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { expectCode } from "../support/expect-code.ts";
import { type Api, createApi, protocols } from "../support/protocols.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const uuidV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe.each(protocols)("ClientService over %s", (protocol) => {
  let api: Api;
  beforeAll(() => {
    api = createApi(protocol, server.url);
  });
  /** Every client, page by page. */
  const allClients = async () => {
    const clients = [];
    for (let offset = 0; ; offset += 100) {
      const { data } = await api.clients.listClients({ offset, limit: 100 });
      clients.push(...data);
      if (data.length < 100) return clients;
    }
  };

  it("creates a client, returning its id and a 256-bit secret once", async () => {
    const created = await api.clients.createClient({ name: "  My Application ", scopes: " topics:create topics:read ", isActive: true });
    expect(created.id).toMatch(uuidV7);
    expect(created.secret).toMatch(/^[0-9a-f]{64}$/);
    const client = await api.clients.getClient({ id: created.id });
    expect(client).toMatchObject({
      id: created.id,
      name: "My Application",
      scopes: "topics:create topics:read",
      isActive: true,
      tokenVersion: 1,
    });
    expect(client.createdAt).toEqual(client.updatedAt);
    expect(toJsonString(ClientSchema, client)).not.toContain(created.secret);
  });

  it("makes a client active unless told otherwise", async () => {
    const created = await api.clients.createClient({ name: "defaults", scopes: "*" });
    expect((await api.clients.getClient({ id: created.id })).isActive).toBe(true);
    const inactive = await api.clients.createClient({ name: "off", scopes: "*", isActive: false });
    expect((await api.clients.getClient({ id: inactive.id })).isActive).toBe(false);
  });

  it("updates a client and bumps its token_version", async () => {
    const { id } = await api.clients.createClient({ name: "before", scopes: "topics:read" });
    const updated = await api.clients.updateClient({
      id,
      name: "after",
      scopes: "subscriptions:consume:s1 subscriptions:update:s1 topics:read",
      isActive: false,
    });
    expect(updated).toMatchObject({
      id,
      name: "after",
      scopes: "subscriptions:consume:s1 subscriptions:update:s1 topics:read",
      isActive: false,
      tokenVersion: 2,
    });
    expect((await api.clients.updateClient({ id, name: "after", scopes: "*" })).tokenVersion).toBe(3);
    expect(await api.clients.getClient({ id })).toMatchObject({ isActive: true, tokenVersion: 3 });
  });

  it("lists clients oldest first, by pages", async () => {
    const made = [];
    for (let n = 0; n < 3; n++) made.push((await api.clients.createClient({ name: `list-${protocol}-${n}`, scopes: "*" })).id);
    const all = (await api.clients.listClients({ limit: 100 })).data.map((client) => client.id);
    expect(all).toEqual([...all].sort());
    const start = all.indexOf(made[0] as string);
    expect((await api.clients.listClients({ offset: start, limit: 3 })).data.map((client) => client.id)).toEqual(made);
    expect((await api.clients.listClients({})).data.length).toBeLessThanOrEqual(10);
  });

  it("deletes a client", async () => {
    const { id } = await api.clients.createClient({ name: "gone", scopes: "*" });
    await api.clients.deleteClient({ id });
    expect((await expectCode(api.clients.getClient({ id }), Code.NotFound)).rawMessage).toBe("Client not found");
    await expectCode(api.clients.deleteClient({ id }), Code.NotFound);
    await expectCode(api.clients.updateClient({ id, name: "x", scopes: "*" }), Code.NotFound);
  });

  it.each([
    ["a blank name", { name: "   ", scopes: "*" }, /^name must not be blank/],
    ["blank scopes", { name: "n", scopes: " " }, /^scopes must not be blank/],
    ["an unknown scope", { name: "n", scopes: "topics:read topics:eat" }, /^scopes has an invalid scope "topics:eat"/],
    ["a scope with too many parts", { name: "n", scopes: "topics:read:a:b" }, /^scopes has an invalid scope/],
    ["a narrowed wildcard", { name: "n", scopes: "*:x" }, /^scopes has an invalid scope/],
    ["a scope narrowed to no resource", { name: "n", scopes: "topics:publish:" }, /^scopes has an invalid scope "topics:publish:"/],
  ])("refuses %s and creates nothing", async (_, request, message) => {
    const before = await allClients();
    const error = await expectCode(api.clients.createClient(request), Code.InvalidArgument);
    expect(error.rawMessage).toMatch(message);
    const { id } = await api.clients.createClient({ name: "valid", scopes: "*" });
    await expectCode(api.clients.updateClient({ id, ...request }), Code.InvalidArgument);
    expect(await api.clients.getClient({ id })).toMatchObject({ name: "valid", scopes: "*", tokenVersion: 1 });
    const after = await allClients();
    expect(after).toHaveLength(before.length + 1);
    // No call of any row or protocol may have made a client of the refused name.
    expect(after.filter((client) => client.name.trim() === request.name.trim())).toEqual([]);
  });

  it("refuses ids that are not UUIDs", async () => {
    for (const call of [
      () => api.clients.getClient({ id: "client-1" }),
      () => api.clients.deleteClient({ id: "1" }),
      () => api.clients.updateClient({ id: "x", name: "n", scopes: "*" }),
    ]) {
      expect((await expectCode(call(), Code.InvalidArgument)).rawMessage).toMatch(/^id must be a UUID/);
    }
  });
});

describe("the REST client paths", () => {
  it("answer with the seed's bodies, and never show the secret's hash", async () => {
    const created = await fetch(new URL("/clients", server.url), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "My Application", scopes: "topics:create topics:read subscriptions:consume", is_active: true }),
    });
    expect(created.status).toBe(201);
    const { id, secret, ...rest } = (await created.json()) as Record<string, string>;
    expect(rest).toEqual({});
    const fetched = await fetch(new URL(`/clients/${id}`, server.url));
    const body = (await fetched.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(["created_at", "id", "is_active", "name", "scopes", "token_version", "updated_at"]);
    expect(body).toMatchObject({ id, name: "My Application", is_active: true, token_version: 1 });
    const updated = await fetch(new URL(`/clients/${id}`, server.url), {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Updated Application Name", scopes: "topics:read subscriptions:read", is_active: true }),
    });
    expect(updated.status).toBe(200);
    expect(await updated.json()).toMatchObject({ name: "Updated Application Name", token_version: 2 });
    const list = (await (await fetch(new URL("/clients?offset=0&limit=100", server.url))).json()) as { data: unknown[] };
    expect(JSON.stringify(list)).not.toContain(secret as string);
    expect(JSON.stringify(list)).not.toContain("scrypt");
    expect((await fetch(new URL(`/clients/${id}`, server.url), { method: "DELETE" })).status).toBe(204);
  });
});
