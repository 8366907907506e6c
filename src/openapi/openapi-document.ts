import type { DescField, DescFile, DescMessage, DescMethod, DescService, JsonObject } from "@bufbuild/protobuf";
import { type RestBinding, restBinding } from "../server/rest/rest-binding.ts";
import { healthPaths, healthTag } from "./health-paths.ts";
import { firstSentence, protoComment } from "./proto-comment.ts";
import { type HttpRule, type ProtoOptions, protoOptions } from "./proto-options.ts";
import { compare, createSchemaBuilder, describe, type SchemaBuilder } from "./schema-builder.ts";

const verbs = ["get", "put", "post", "delete", "patch"] as const;

/** The error answers of the REST API, by status: their component name and what they mean. */
const errorResponses: Record<string, { name: string; description: string; example: string }> = {
  "401": {
    name: "Unauthenticated",
    description: "Authentication failed: no valid bearer token, or wrong client credentials.",
    example: "Invalid jwt token",
  },
  "403": { name: "PermissionDenied", description: "The token's scopes do not grant this call.", example: "Insufficient scope" },
  "404": { name: "NotFound", description: "The resource does not exist.", example: "Topic not found" },
  "409": { name: "AlreadyExists", description: "A resource with the same id already exists.", example: "already exists" },
  "413": {
    name: "PayloadTooLarge",
    description: "The request body is larger than the server accepts.",
    example: "request body is larger than 16777216 bytes",
  },
  "422": {
    name: "InvalidArgument",
    description: "The request is not valid JSON or breaks an input rule; the reason names the field.",
    example: "id must be 1 to 128 characters of letters, digits, '-', '.' and '_'",
  },
  "500": { name: "InternalError", description: "An unexpected error; its cause is logged, never sent.", example: "Internal server error" },
  "503": { name: "Unavailable", description: "The database is unavailable.", example: "database is unavailable" },
};

const errorSchema: JsonObject = {
  type: "object",
  description: "The body of every error answer.",
  properties: { detail: { type: "string", description: "Why the request failed." } },
  required: ["detail"],
};

const bearerAuth: JsonObject = {
  type: "http",
  scheme: "bearer",
  bearerFormat: "JWT",
  description:
    "An access token from POST /oauth/token, checked only when the server runs with FASTPUBSUB_AUTH_ENABLED=true. " +
    "Its scopes must include the operation's scope, the scope narrowed to the resource id (e.g. `topics:publish:orders`), or `*`.",
};

/**
 * Builds the OpenAPI 3.1 document of the REST API from the proto files that
 * declare the services: a path for every google.api.http rule, schemas with
 * the (fastpubsub.v1.rules) input rules, descriptions from the proto comments
 * and bearer security from (fastpubsub.v1.access), plus the health paths.
 */
export function openApiDocument(files: readonly DescFile[]): JsonObject {
  const sortedFiles = [...files].sort((a, b) => compare(a.name, b.name));
  const options = protoOptions(sortedFiles);
  const schemas = createSchemaBuilder(options);
  const services = sortedFiles.flatMap((file) => file.services);
  const paths: Record<string, JsonObject> = {};
  for (const service of services) {
    for (const method of service.methods) {
      const rule = options.httpRule(method);
      if (!rule) continue;
      const route = routeFromRule(method, rule);
      paths[route.template] = { ...paths[route.template], [route.verb]: operation(service, method, route, options, schemas) };
    }
  }
  const componentSchemas = { ...schemas.components(), Error: errorSchema };
  return {
    openapi: "3.1.0",
    info: {
      title: "fastpubsub",
      version: services[0]?.file.proto.package.split(".").at(-1) ?? "v1",
      description:
        "Simple, reliable, fast pub/sub on PostgreSQL. This document describes the REST paths; the same RPCs are served " +
        "over Connect, gRPC and gRPC-Web on the same port. JSON field names are the proto field names, and every error " +
        'answer is `{"detail": "<reason>"}`.',
    },
    servers: [{ url: "/", description: "This server" }],
    tags: [...services.map((service) => ({ name: service.name, ...describe(protoComment(service)) })), healthTag],
    paths: { ...paths, ...healthPaths },
    components: {
      schemas: Object.fromEntries(Object.entries(componentSchemas).sort(([a], [b]) => compare(a, b))),
      responses: Object.fromEntries(
        Object.values(errorResponses).map(({ name, description, example }) => [
          name,
          {
            description,
            content: { "application/json": { schema: { $ref: "#/components/schemas/Error" }, example: { detail: example } } },
          },
        ]),
      ),
      securitySchemes: { bearerAuth },
    },
  };
}

function routeFromRule(method: DescMethod, rule: HttpRule): RestBinding {
  const verb = verbs.find((candidate) => rule[candidate] !== undefined);
  const path = verb && rule[verb];
  if (!verb || !path) throw new Error(`${method.parent.typeName}.${method.name}: unsupported google.api.http pattern`);
  return restBinding(method, { verb, path, body: rule.body ?? "" });
}

function operation(
  service: DescService,
  method: DescMethod,
  route: RestBinding,
  options: ProtoOptions,
  schemas: SchemaBuilder,
): JsonObject {
  const access = options.access(method);
  if (!access) throw new Error(`${service.typeName}.${method.name} declares no (fastpubsub.v1.access)`);
  const comment = protoComment(method);
  const secured = access.public !== true;
  const scope = access.scope ?? "";
  const narrowed = access.resource_field ? ` or \`${scope}:{${access.resource_field}}\`` : "";
  const accessNote = secured
    ? `**Access:** a bearer token with the scope \`${scope}\`${narrowed}, when authentication is enabled.`
    : "**Access:** public, no token needed.";
  const parameters = [
    ...route.pathFields.map((field) => parameter(field, "path", schemas)),
    ...route.queryFields.map((field) => parameter(field, "query", schemas)),
  ];
  const requestBody = route.body === "none" ? undefined : requestBodyOf(method.input, route.pathFields, route.body, schemas);
  return {
    tags: [service.name],
    summary: firstSentence(comment),
    description: [comment, accessNote].filter(Boolean).join("\n\n"),
    operationId: method.name,
    ...(secured ? { security: [{ bearerAuth: scope ? [scope] : [] }] } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(requestBody ? { requestBody } : {}),
    responses: responses(method, route, comment, secured, schemas),
  };
}

function parameter(field: DescField, location: "path" | "query", schemas: SchemaBuilder): JsonObject {
  const { description: _, ...schema } = schemas.fieldSchema(field);
  const required = location === "path" || schemas.isRequired(field);
  return {
    name: field.name,
    in: location,
    ...describe(protoComment(field)),
    ...(required ? { required: true } : {}),
    schema,
    ...(field.fieldKind === "list" ? { style: "form", explode: true } : {}),
  };
}

function requestBodyOf(
  input: DescMessage,
  pathFields: readonly DescField[],
  body: "message" | DescField,
  schemas: SchemaBuilder,
): JsonObject {
  if (body === "message") {
    const omit = new Set(pathFields);
    const schema = omit.size === 0 ? schemas.messageSchema(input) : schemas.partialMessageSchema(input, omit);
    const required = input.fields.some((field) => !omit.has(field) && schemas.isRequired(field));
    return {
      ...describe(firstSentence(protoComment(input))),
      ...(required ? { required: true } : {}),
      content: { "application/json": { schema } },
    };
  }
  const { description, ...schema } = schemas.fieldSchema(body);
  return { ...(description === undefined ? {} : { description }), required: true, content: { "application/json": { schema } } };
}

function responses(method: DescMethod, route: RestBinding, comment: string, secured: boolean, schemas: SchemaBuilder): JsonObject {
  const success: JsonObject =
    route.successStatus === 204
      ? { description: "Done, no content." }
      : {
          description: firstSentence(protoComment(method.output)) || "Success.",
          content: { "application/json": { schema: schemas.messageSchema(method.output) } },
        };
  const errors = new Set(["422", "500", "503"]);
  if (secured) for (const status of ["401", "403"]) errors.add(status);
  if (route.pathFields.length > 0) errors.add("404");
  if (route.body !== "none") errors.add("413");
  // Comments name the other errors an RPC answers with, as in "already_exists (REST: 409)".
  for (const match of comment.matchAll(/REST: (\d{3})/g)) if (match[1] && errorResponses[match[1]]) errors.add(match[1]);
  const answers: Record<string, JsonObject> = { [String(route.successStatus)]: success };
  for (const status of [...errors].sort(compare)) {
    answers[status] = { $ref: `#/components/responses/${errorResponses[status]?.name}` };
  }
  return answers;
}
