import {
  type DescExtension,
  type DescField,
  type DescFile,
  type DescMethod,
  getOption,
  hasOption,
  type Message,
  toJson,
} from "@bufbuild/protobuf";

/** A google.api.http rule in proto JSON: one verb key holding the path template, and the body binding. */
export interface HttpRule {
  get?: string;
  put?: string;
  post?: string;
  delete?: string;
  patch?: string;
  body?: string;
}

/** A (fastpubsub.v1.access) option in proto JSON. */
export interface Access {
  scope?: string;
  resource_field?: string;
  public?: boolean;
}

/** A (fastpubsub.v1.rules) option in proto JSON; `format` is a fastpubsub.v1.Format value name. */
export interface FieldRules {
  format?: string;
  min?: number;
  max?: number;
  required?: boolean;
  max_items?: number;
}

/** Reads the custom options that shape the REST API from method and field descriptors. */
export interface ProtoOptions {
  httpRule(method: DescMethod): HttpRule | undefined;
  access(method: DescMethod): Access | undefined;
  fieldRules(field: DescField): FieldRules;
}

/**
 * Finds the extensions google.api.http, fastpubsub.v1.access and
 * fastpubsub.v1.rules among the files and their imports, and returns readers
 * of their values.
 */
export function protoOptions(files: readonly DescFile[]): ProtoOptions {
  const http = findExtension(files, "google.api.http");
  const access = findExtension(files, "fastpubsub.v1.access");
  const rules = findExtension(files, "fastpubsub.v1.rules");
  return {
    httpRule: (method) => optionJson<HttpRule>(method, http),
    access: (method) => optionJson<Access>(method, access),
    fieldRules: (field) => optionJson<FieldRules>(field, rules) ?? {},
  };
}

function findExtension(files: readonly DescFile[], typeName: string): DescExtension {
  const seen = new Set<DescFile>();
  const queue = [...files];
  for (const file of queue) {
    if (seen.has(file)) continue;
    seen.add(file);
    const extension = file.extensions.find((candidate) => candidate.typeName === typeName);
    if (extension) return extension;
    queue.push(...file.dependencies);
  }
  throw new Error(`the extension ${typeName} is declared by none of the files or their imports`);
}

function optionJson<T>(element: DescMethod | DescField, extension: DescExtension): T | undefined {
  if (!hasOption(element, extension) || !extension.message) return undefined;
  return toJson(extension.message, getOption(element, extension) as Message, { useProtoFieldName: true }) as T;
}
