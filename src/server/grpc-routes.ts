import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.ts";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { createHealthService, type HealthServiceOptions } from "../services/health-service.ts";
import { createReflectionServices } from "../services/reflection-service.ts";

/** gRPC's own services: health and server reflection, both versions. */
export const grpcServices = [Health, ServerReflectionV1, ServerReflectionV1alpha] as const;

/**
 * Registers gRPC's health and reflection services, open to every caller:
 * they run through `interceptors` only, instead of the API's chain, whose
 * access rules, input rules and wait for the database are the API's.
 * Reflection describes `apiServices` and these three.
 */
export function createGrpcRoutes(options: {
  apiServices: readonly DescService[];
  health: Omit<HealthServiceOptions, "services">;
  interceptors: Interceptor[];
}) {
  const reflection = createReflectionServices([...options.apiServices, ...grpcServices]);
  const health = createHealthService({ ...options.health, services: options.apiServices.map((service) => service.typeName) });
  const serviceOptions = { interceptors: options.interceptors };
  return (router: ConnectRouter) => {
    router.service(Health, health, serviceOptions);
    router.service(ServerReflectionV1, reflection.v1, serviceOptions);
    router.service(ServerReflectionV1alpha, reflection.v1alpha, serviceOptions);
  };
}
