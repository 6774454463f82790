/**
 * The library entry (package.json `main`/`exports`): the engine without the
 * CLI. Open a store with `openStore`, call the ops on it, close it. Nothing
 * here loads oclif or touches process.stdout; backends load lazily when a
 * URL names them, as for the CLI.
 */

// Opening a store: a folder, `memory://`, `grpc+http://HOST:PORT`, `grpc+unix:///SOCKET`.
export { type OpenStoreOptions, openStore } from './backends/open-store.js'

// The ops: one engine verb each, as the commands of the same names use them.
export { importPath, nameForPath } from './ops/import-paths.js'
export { importNar } from './ops/import-nar.js'
export type { Imported } from './ops/register.js'
export { exportNar } from './ops/export-nar.js'
export { catFile } from './ops/cat.js'
export { type Listing, type LsOptions, listJson, listText, listingToJson } from './ops/ls.js'
export { narInfo } from './ops/narinfo.js'
export { type PathInfoEntry, type PathInfoQuery, queryPathInfos } from './ops/path-info.js'
export { type ListQuery, queryGraph, queryPaths, queryTree } from './ops/query.js'
export { closureOf } from './ops/closure.js'
export { type CopyOptions, type CopyReport, copyClosure } from './ops/copy.js'
export { type ClosureEntry, importClosure, parseClosureListing } from './ops/import-closure.js'

// The services a store is made of, and the optional capabilities some stores add.
export type { Store, TempRootKind, TempRoots } from './store/store.js'
export type { BlobInfo, BlobService, BlobStage, ByteSource } from './castore/blob-service.js'
export type { DirectoryService } from './castore/directory-service.js'
export type { PathInfoService } from './store/path-info-service.js'
export * from './store/capabilities.js'

// The data: castore's Merkle tree, store paths and PathInfos, in Nix's forms too.
export type { Directory, DirectoryNode, FileNode, Node, SymlinkNode } from './castore/node.js'
export type { B3Digest } from './castore/digest.js'
export { type ContentAddress, CaHash, type NarInfo, type PathInfo, type Signature, storePathOf, validatePathInfo } from './store/path-info.js'
export { type StorePath, absolute, basename, parseStorePathArg } from './store/store-path.js'
export { type PathInfoJson, pathInfoJson } from './store/path-info-json.js'
export { narInfoFields, renderNarInfo } from './store/narinfo.js'

// Errors: every failure is a StoreError with a stable `code` (ERR_NOT_FOUND, …); all of src/errors.ts, so new classes come along.
export * from './errors.js'
