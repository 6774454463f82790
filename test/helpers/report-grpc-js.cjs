// Preloaded into a CLI process (NODE_OPTIONS=--require …): says on stderr, at exit, whether the process loaded grpc-js.
const Module = require('node:module')
const load = Module._load
let loaded = false
Module._load = function (request, ...rest) {
  if (request === '@grpc/grpc-js') loaded = true
  return load.call(this, request, ...rest)
}
process.on('exit', () => {
  if (loaded) process.stderr.write('(grpc-js was loaded)\n')
})
