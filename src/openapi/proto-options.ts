import type { DescEnum, Message, Registry } from "@bufbuild/protobuf";
import type { GenExtension } from "@bufbuild/protobuf/codegenv2";
import type { FieldOptions, MethodOptions } from "@bufbuild/protobuf/wkt";
// Types only: the plugin runs before gen/ exists (buf.gen.yaml's clean: true), and reads the proto files as they are now.
import type { Access } from "../../gen/fastpubsub/v1/access_pb.ts";
import type { FieldRules } from "../../gen/fastpubsub/v1/field_rules_pb.ts";
import type { HttpRule } from "../../gen/google/api/http_pb.ts";

/**
 * The descriptors of the custom options that shape the REST API, taken from
 * the registry of the proto files. They read an option into the same shape as
 * gen/'s, so they are typed as gen/'s and feed the code the server runs.
 */
export interface ProtoOptions {
  http: GenExtension<MethodOptions, HttpRule>;
  access: GenExtension<MethodOptions, Access>;
  rules: GenExtension<FieldOptions, FieldRules>;
  /** fastpubsub.v1.Format, the enum of FieldRules.format. */
  format: DescEnum;
}

/** Finds google.api.http, fastpubsub.v1.access, fastpubsub.v1.rules and fastpubsub.v1.Format in a registry. */
export function protoOptions(registry: Registry): ProtoOptions {
  const format = registry.getEnum("fastpubsub.v1.Format");
  if (!format) throw new Error("the enum fastpubsub.v1.Format is declared by none of the files or their imports");
  return {
    http: extension(registry, "google.api.http"),
    access: extension(registry, "fastpubsub.v1.access"),
    rules: extension(registry, "fastpubsub.v1.rules"),
    format,
  };
}

function extension<Extendee extends Message, Value>(registry: Registry, typeName: string): GenExtension<Extendee, Value> {
  const found = registry.getExtension(typeName);
  if (!found) throw new Error(`the extension ${typeName} is declared by none of the files or their imports`);
  return found as GenExtension<Extendee, Value>;
}
