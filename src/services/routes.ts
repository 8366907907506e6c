import type { ConnectRouter } from "@connectrpc/connect";
import { AuthService } from "../../gen/fastpubsub/v1/auth_service_pb.ts";
import { ClientService } from "../../gen/fastpubsub/v1/client_service_pb.ts";
import { SubscriptionService } from "../../gen/fastpubsub/v1/subscription_service_pb.ts";
import { TopicService } from "../../gen/fastpubsub/v1/topic_service_pb.ts";
import type { Config } from "../config/config.ts";
import type { Database } from "../db/database.ts";
import { createSubscriptionService } from "./subscription-service.ts";
import { createTopicService } from "./topic-service.ts";

/** Registers the four services; an RPC without an implementation answers unimplemented. */
export function createRoutes(db: Database, config: Config) {
  return (router: ConnectRouter) => {
    router.service(TopicService, createTopicService(db));
    router.service(SubscriptionService, createSubscriptionService(db, config));
    router.service(ClientService, {});
    router.service(AuthService, {});
  };
}
