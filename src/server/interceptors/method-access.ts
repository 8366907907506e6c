import { type DescField, type DescMethod, getOption, hasOption } from "@bufbuild/protobuf";
import type { GenExtension } from "@bufbuild/protobuf/codegenv2";
import type { MethodOptions } from "@bufbuild/protobuf/wkt";
// Types only: the OpenAPI plugin imports this module and runs before gen/ exists (buf.gen.yaml's clean: true).
import type { Access } from "../../../gen/fastpubsub/v1/access_pb.ts";

/** Who may call one RPC, read from its (fastpubsub.v1.access) option. */
export interface MethodAccess {
  public: boolean;
  scope: string;
  /** The request field holding the id of the resource acted on, to which a scope may be narrowed. */
  resourceField?: DescField;
}

/**
 * Reads the (fastpubsub.v1.access) option of an RPC through `extension`: gen/'s
 * `access` in the server, the same extension from a registry in the OpenAPI
 * plugin. Throws when the RPC declares none, so that nothing is open by
 * mistake, or when its resource_field names no field of the request.
 */
export function methodAccess(method: DescMethod, extension: GenExtension<MethodOptions, Access>): MethodAccess {
  const where = `${method.parent.typeName}.${method.name}`;
  if (!hasOption(method, extension)) throw new Error(`${where} declares no (fastpubsub.v1.access)`);
  const rule = getOption(method, extension);
  const resourceField = method.input.fields.find((field) => field.name === rule.resourceField);
  if (rule.resourceField && !resourceField) throw new Error(`${where}: no field ${rule.resourceField}`);
  return { public: rule.public, scope: rule.scope, resourceField };
}
