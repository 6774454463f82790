/**
 * The FileDescriptorProtos the daemon serves over gRPC server reflection:
 * every .proto file of ours, keyed by its name exactly as importing files
 * spell it in `dependency`, plus an index from each fully-qualified symbol
 * to the file that declares it.
 *
 * Built from the GenFile objects protoc-gen-es embeds in src/proto/gen.
 * The embedded base64 has `dependency`, `source_code_info` (comments) and
 * default `json_name`s stripped; @bufbuild/protobuf's fileDesc() puts
 * `dependency` (from the GenFile's imports) and `json_name` back at load
 * time, so `file.proto` is complete except for comments. buildDescriptorPool
 * re-checks that every dependency name resolves inside the pool, so a
 * client can always fetch the whole import graph back by file name.
 *
 * Daemon-only: this loads @bufbuild/protobuf, which the CLI avoids.
 */
import { toBinary } from '@bufbuild/protobuf'
import type { DescFile } from '@bufbuild/protobuf'
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
} from '@bufbuild/protobuf/wkt'
import { file_grpc_health_v1_health } from '../proto/gen/grpc/health/v1/health_pb.js'
import { file_grpc_reflection_v1_reflection } from '../proto/gen/grpc/reflection/v1/reflection_pb.js'
import { file_grpc_reflection_v1alpha_reflection } from '../proto/gen/grpc/reflection/v1alpha/reflection_pb.js'
import { file_tvix_castore_protos_castore } from '../proto/gen/tvix/castore/protos/castore_pb.js'
import { file_tvix_castore_protos_rpc_blobstore } from '../proto/gen/tvix/castore/protos/rpc_blobstore_pb.js'
import { file_tvix_castore_protos_rpc_directory } from '../proto/gen/tvix/castore/protos/rpc_directory_pb.js'
import { file_tvix_store_protos_pathinfo } from '../proto/gen/tvix/store/protos/pathinfo_pb.js'
import { file_tvix_store_protos_rpc_pathinfo } from '../proto/gen/tvix/store/protos/rpc_pathinfo_pb.js'
import { file_tvix_store_ext_v1_batch_blobs } from '../proto/gen/tvix_store/ext/v1/batch_blobs_pb.js'

/** One .proto file as reflection serves it. */
export interface DescriptorFile {
  /** e.g. "tvix/castore/protos/castore.proto" (FileDescriptorProto.name). */
  readonly name: string
  readonly proto: FileDescriptorProto
  /** Serialized FileDescriptorProto, computed once. */
  readonly bytes: Uint8Array
  /** Direct imports, by file name, as in proto.dependency. */
  readonly dependencies: readonly string[]
}

/** What a symbol is; reflection only needs the file, the kind helps callers and tests. */
export type SymbolKind = 'message' | 'enum' | 'enum_value' | 'field' | 'oneof' | 'extension' | 'service' | 'method'

export interface DescriptorPool {
  /** Every file, keyed by FileDescriptorProto.name. */
  readonly files: ReadonlyMap<string, DescriptorFile>
  /** Fully-qualified symbol (no leading dot) → name of the declaring file. */
  readonly symbols: ReadonlyMap<string, { readonly file: string; readonly kind: SymbolKind }>
  /** The declaring file of a fully-qualified symbol (a leading "." is accepted). */
  fileContainingSymbol(symbol: string): DescriptorFile | undefined
  /**
   * The file and all its transitive imports, each once, the file itself
   * first and then its imports depth-first in declaration order.
   * Undefined for an unknown file name.
   */
  closure(fileName: string): DescriptorFile[] | undefined
}

/**
 * A pool of the given files and, recursively, everything they import.
 * Throws if a file name occurs twice with different content, a symbol is
 * declared twice, or an import does not resolve within the pool.
 */
export function buildDescriptorPool(roots: readonly DescFile[]): DescriptorPool {
  const files = new Map<string, DescriptorFile>()
  const symbols = new Map<string, { file: string; kind: SymbolKind }>()

  const visit = (desc: DescFile): void => {
    const proto = desc.proto
    const known = files.get(proto.name)
    if (known !== undefined) {
      if (known.proto !== proto) {
        const bytes = toBinary(FileDescriptorProtoSchema, proto)
        if (!sameBytes(bytes, known.bytes)) throw new Error(`two different descriptors named ${proto.name}`)
      }
      return
    }
    files.set(proto.name, {
      name: proto.name,
      proto,
      bytes: toBinary(FileDescriptorProtoSchema, proto),
      dependencies: [...proto.dependency],
    })
    indexFile(proto, (symbol, kind) => {
      const prev = symbols.get(symbol)
      if (prev !== undefined) throw new Error(`symbol ${symbol} declared in both ${prev.file} and ${proto.name}`)
      symbols.set(symbol, { file: proto.name, kind })
    })
    for (const dep of desc.dependencies) visit(dep)
  }
  for (const root of roots) visit(root)

  for (const file of files.values()) {
    for (const dep of file.dependencies) {
      if (!files.has(dep)) throw new Error(`${file.name} imports ${dep}, which is not in the descriptor pool`)
    }
  }

  const closure = (fileName: string): DescriptorFile[] | undefined => {
    const start = files.get(fileName)
    if (start === undefined) return undefined
    const out: DescriptorFile[] = []
    const seen = new Set<string>()
    const walk = (f: DescriptorFile): void => {
      if (seen.has(f.name)) return
      seen.add(f.name)
      out.push(f)
      for (const dep of f.dependencies) walk(files.get(dep)!)
    }
    walk(start)
    return out
  }

  return {
    files,
    symbols,
    fileContainingSymbol(symbol) {
      const entry = symbols.get(symbol.startsWith('.') ? symbol.slice(1) : symbol)
      return entry === undefined ? undefined : files.get(entry.file)
    },
    closure,
  }
}

/** Calls `add` for every fully-qualified name the file declares. */
function indexFile(file: FileDescriptorProto, add: (symbol: string, kind: SymbolKind) => void): void {
  const scope = file.package === '' ? '' : `${file.package}.`
  const addEnum = (e: EnumDescriptorProto, parentScope: string): void => {
    add(parentScope + e.name, 'enum')
    // Enum values are siblings of their enum (C++ scoping), as protoc and
    // the Go/Java registries name them.
    for (const v of e.value) add(parentScope + v.name, 'enum_value')
  }
  const addMessage = (m: DescriptorProto, parentScope: string): void => {
    const name = parentScope + m.name
    add(name, 'message')
    const inner = `${name}.`
    for (const f of m.field) add(inner + f.name, 'field')
    for (const o of m.oneofDecl) add(inner + o.name, 'oneof')
    for (const x of m.extension) add(inner + x.name, 'extension')
    for (const n of m.nestedType) addMessage(n, inner)
    for (const e of m.enumType) addEnum(e, inner)
  }
  for (const m of file.messageType) addMessage(m, scope)
  for (const e of file.enumType) addEnum(e, scope)
  for (const x of file.extension) add(scope + x.name, 'extension')
  for (const s of file.service) {
    const name = scope + s.name
    add(name, 'service')
    for (const m of s.method) add(`${name}.${m.name}`, 'method')
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * All our files: tvix castore (castore, rpc_blobstore, rpc_directory), tvix
 * store (pathinfo, rpc_pathinfo), grpc.health.v1 and both grpc.reflection
 * versions.
 */
export const daemonDescriptors: DescriptorPool = buildDescriptorPool([
  file_tvix_castore_protos_castore,
  file_tvix_castore_protos_rpc_blobstore,
  file_tvix_castore_protos_rpc_directory,
  file_tvix_store_protos_pathinfo,
  file_tvix_store_protos_rpc_pathinfo,
  file_tvix_store_ext_v1_batch_blobs,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
])
