import * as grpc from '@grpc/grpc-js'

/**
 * grpc-js prints its own copy of a failed bind ("E No address added…"):
 * our error line says it once. A module of its own, imported on demand, so
 * that the fast-path bundle (scripts/bundle-fast-path.mjs) requires
 * grpc-js: a bare `import('@grpc/grpc-js')` there would be an ES import,
 * which the bundle, compiled as a script, cannot make.
 */
export function quietGrpcLogs(): void {
  if (!process.env.GRPC_VERBOSITY) grpc.setLogVerbosity(grpc.logVerbosity.NONE)
}
