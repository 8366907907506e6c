import type { ConnectRouter } from "@connectrpc/connect";
import { AuthService } from "../../gen/fastpubsub/v1/auth_service_pb.ts";
import { ClientService } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { SubscriptionService } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import type { Tokens } from "../auth/tokens.ts";
import type { Config } from "../config/config.ts";
import type { Database } from "../db/database.ts";
import { createAuthService } from "../services/auth-service.ts";
import { createClientService } from "../services/client-service.ts";
import { createSubscriptionService } from "../services/subscription-service.ts";
import { createTopicService } from "../services/topic-service.ts";
import type { Waiting } from "../waiting/waiting.ts";

/** The four services of the API. */
export const services = [TopicService, SubscriptionService, ClientService, AuthService] as const;

/** Registers the four services. */
export function createRoutes(db: Database, config: Config, tokens: Tokens | undefined, waiting: Waiting) {
  return (router: ConnectRouter) => {
    router.service(TopicService, createTopicService(db, waiting));
    router.service(SubscriptionService, createSubscriptionService(db, config, waiting));
    router.service(ClientService, createClientService(db.pool));
    router.service(AuthService, createAuthService(db.pool, tokens));
  };
}
