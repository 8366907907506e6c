import { Command } from "@oclif/core";
import { generateSecret } from "../../src/auth/client-secrets.ts";

export default class GenerateSecretKey extends Command {
  static override summary = "Print a new random secret for FASTPUBSUB_AUTH_SECRET_KEY.";
  static override description = "Prints new_secret=<64 hex digits> (256 random bits). Every server of a deployment must use the same key.";

  async run() {
    this.log(`new_secret=${generateSecret()}`);
  }
}
