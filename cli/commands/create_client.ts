import { create } from "@bufbuild/protobuf";
import { Args } from "@oclif/core";
import { CreateClientRequestSchema } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { booleanWord } from "../../src/config/config.ts";
import { validateMessage } from "../../src/server/interceptors/validation.ts";
import { registerClient } from "../../src/services/client-service.ts";
import { FastpubsubCommand } from "../command.ts";
import { withDatabase } from "../database.ts";

export default class CreateClient extends FastpubsubCommand {
  static override summary = "Create an API client and print its id and secret.";
  static override description =
    "Prints client_id=<uuid> and client_secret=<secret>. The secret is shown only here: fastpubsub keeps only its hash.";
  static override examples = [
    '<%= config.bin %> create_client "Admin Client" "*" true',
    '<%= config.bin %> create_client "Publisher" "topics:publish:orders" true',
  ];
  static override args = {
    name: Args.string({ description: "the client's name", required: true }),
    scopes: Args.string({ description: 'space-separated scopes, e.g. "topics:create topics:read"', default: "*" }),
    is_active: Args.string({ description: "whether the client may authenticate: true or false", default: "true" }),
  };

  async run() {
    const { args } = await this.parse(CreateClient);
    const active = booleanWord.safeParse(args.is_active);
    if (!active.success) throw new Error(`IS_ACTIVE must be true or false, not ${JSON.stringify(args.is_active)}`);
    const request = create(CreateClientRequestSchema, { name: args.name, scopes: args.scopes, isActive: active.data });
    validateMessage(CreateClientRequestSchema, request);
    const { config, logger } = this.setup();
    const client = await withDatabase(config, logger, (db) => registerClient(db, request));
    this.log(`client_id=${client.id}`);
    this.log(`client_secret=${client.secret}`);
  }
}
