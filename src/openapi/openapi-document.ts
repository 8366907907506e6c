import {
  type DescField,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescService,
  getOption,
  hasOption,
  type JsonObject,
  type Registry,
} from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { fieldFormats } from "../server/interceptors/field-formats.ts";
import { methodAccess } from "../server/interceptors/method-access.ts";
import { httpStatusFromCode } from "../server/rest/http-status.ts";
import { type RestBinding, restBinding } from "../server/rest/rest-binding.ts";
import { healthPaths, healthTag } from "./health-paths.ts";
import { firstSentence, protoComment } from "./proto-comment.ts";
import { type ProtoOptions, protoOptions } from "./proto-options.ts";
import { compare, createSchemaBuilder, describe, type SchemaBuilder } from "./schema-builder.ts";

/** The error answers of the REST API: the Connect code each stands for, its component name, what it means and an example reason. */
const errorResponses: { code: Code; name: string; description: string; example: string }[] = [
  {
    code: Code.Unauthenticated,
    name: "Unauthenticated",
    description: "Authentication failed: no valid bearer token, or wrong client credentials.",
    example: "Invalid jwt token",
  },
  {
    code: Code.PermissionDenied,
    name: "PermissionDenied",
    description: "The token's scopes do not grant this call.",
    example: "Insufficient scope",
  },
  { code: Code.NotFound, name: "NotFound", description: "The resource does not exist.", example: "Topic not found" },
  {
    code: Code.AlreadyExists,
    name: "AlreadyExists",
    description: "A resource with the same id already exists.",
    example: "already exists",
  },
  {
    code: Code.ResourceExhausted,
    name: "PayloadTooLarge",
    description: "The request body is larger than the server accepts.",
    example: "request body is larger than 16777216 bytes",
  },
  {
    code: Code.InvalidArgument,
    name: "InvalidArgument",
    description: "The request is not valid JSON or breaks an input rule; the reason names the field.",
    // What the validator answers for a topic id that breaks FORMAT_RESOURCE_ID.
    example: `id ${fieldFormats.RESOURCE_ID.check("")}`,
  },
  {
    code: Code.Internal,
    name: "InternalError",
    description: "An unexpected error; its cause is logged, never sent.",
    example: "Internal server error",
  },
  { code: Code.Unavailable, name: "Unavailable", description: "The database is unavailable.", example: "database is unavailable" },
];

/** The error answers by the HTTP status the REST API gives their code, in ascending order. */
const errorResponseByStatus = new Map(
  errorResponses.map((response) => [statusOf(response.code), response] as const).sort(([a], [b]) => compare(a, b)),
);
if (errorResponseByStatus.size !== errorResponses.length) throw new Error("two error answers share an HTTP status");

/** The HTTP status of a Connect code, as the REST API answers with it. */
function statusOf(code: Code): string {
  return String(httpStatusFromCode(code));
}

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
 * declare the services (`registry` holds them and their imports): a path for
 * every google.api.http rule, schemas with the (fastpubsub.v1.rules) input
 * rules, descriptions from the proto comments and bearer security from
 * (fastpubsub.v1.access), plus the health paths.
 */
export function openApiDocument(registry: Registry, files: readonly DescFile[]): JsonObject {
  const sortedFiles = [...files].sort((a, b) => compare(a.name, b.name));
  const options = protoOptions(registry);
  const schemas = createSchemaBuilder(options);
  const services = sortedFiles.flatMap((file) => file.services);
  const paths: Record<string, JsonObject> = {};
  for (const service of services) {
    for (const method of service.methods) {
      if (!hasOption(method, options.http)) continue;
      const route = restBinding(method, getOption(method, options.http), (field) => getOption(field, options.rules).required);
      if (paths[route.template]?.[route.verb]) {
        throw new Error(`${service.typeName}.${method.name}: another RPC is already ${route.verb.toUpperCase()} ${route.template}`);
      }
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
        [...errorResponseByStatus.values()].map(({ name, description, example }) => [
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

function operation(
  service: DescService,
  method: DescMethod,
  route: RestBinding,
  options: ProtoOptions,
  schemas: SchemaBuilder,
): JsonObject {
  const access = methodAccess(method, options.access);
  const comment = protoComment(method);
  const secured = !access.public;
  const scope = access.scope;
  const narrowed = access.resourceField ? ` or \`${scope}:{${access.resourceField.name}}\`` : "";
  const accessNote = secured
    ? `**Access:** a bearer token with the scope \`${scope}\`${narrowed}, when authentication is enabled.`
    : "**Access:** public, no token needed.";
  const parameters = [
    ...route.pathFields.map((field) => parameter(field, "path", schemas)),
    ...route.queryFields.map((field) => parameter(field, "query", schemas, route.body === "message")),
  ];
  const requestBody = route.body === "none" ? undefined : requestBodyOf(method.input, route, route.body, schemas);
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

function parameter(field: DescField, location: "path" | "query", schemas: SchemaBuilder, alsoInBody = false): JsonObject {
  const { description, ...schema } = schemas.fieldSchema(field);
  const required = location === "path" || schemas.isRequired(field);
  const text = [description, alsoInBody ? "It may be given in the body instead, whose value wins." : undefined].filter(Boolean).join(" ");
  return {
    name: field.name,
    in: location,
    ...(text === "" ? {} : { description: text }),
    ...(required ? { required: true } : {}),
    schema,
    ...(field.fieldKind === "list" ? { style: "form", explode: true } : {}),
  };
}

function requestBodyOf(input: DescMessage, route: RestBinding, body: "message" | DescField, schemas: SchemaBuilder): JsonObject {
  if (body === "message") {
    const omit = new Set(route.pathFields);
    const schema = omit.size === 0 ? schemas.messageSchema(input) : schemas.partialMessageSchema(input, omit);
    const required = input.fields.some((field) => !omit.has(field) && schemas.isRequired(field));
    return {
      ...describe(firstSentence(protoComment(input))),
      ...(required ? { required: true } : {}),
      content: { "application/json": { schema }, ...(route.formBody ? { "application/x-www-form-urlencoded": { schema } } : {}) },
    };
  }
  const { description, ...schema } = schemas.fieldSchema(body);
  if (route.bodyStandIn) {
    const text = [description, `Leave the body out with \`${route.bodyStandIn.name}=true\`.`].filter(Boolean).join(" ");
    return { description: text, content: { "application/json": { schema } } };
  }
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
  const errors = new Set([Code.InvalidArgument, Code.Internal, Code.Unavailable].map(statusOf));
  if (secured) for (const code of [Code.Unauthenticated, Code.PermissionDenied]) errors.add(statusOf(code));
  if (route.pathFields.length > 0) errors.add(statusOf(Code.NotFound));
  if (route.body !== "none") errors.add(statusOf(Code.ResourceExhausted));
  // Comments name the other errors an RPC answers with, as in "already_exists (REST: 409)".
  for (const match of comment.matchAll(/REST: (\d{3})/g)) if (match[1] && errorResponseByStatus.has(match[1])) errors.add(match[1]);
  const answers: Record<string, JsonObject> = { [String(route.successStatus)]: success };
  for (const status of [...errors].sort(compare)) {
    answers[status] = { $ref: `#/components/responses/${errorResponseByStatus.get(status)?.name}` };
  }
  return answers;
}
