'use strict';
// What the word-count leaf and merge share: the contract, loaded at run time
// from the same .proto files as the Python root; packing and unpacking of the
// Any payloads; and the lifecycle every scatter/gather process follows
// (docs/any-language.md): bind, health NOT_SERVING while loading, SERVING
// when ready, and on SIGTERM NOT_SERVING + drain within a grace period.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const { HealthImplementation } = require('grpc-health-check');
const { ReflectionService } = require('@grpc/reflection');

const FRAMEWORK_PROTOS = path.resolve(__dirname, '../../protos'); // scatter_gather/v1/*.proto
const APP_PROTOS = path.resolve(__dirname, 'proto'); // wordcount/v1/wordcount.proto
const TYPE_URL_PREFIX = 'type.googleapis.com/';
// Kubernetes waits 30 s before SIGKILL; draining for 10 s leaves room to spare.
const GRACE_MS = Number(process.env.SCATTER_GRACE_SECONDS || 10) * 1000;

// The services, as plain objects: Any is {type_url, value: Buffer}, enums are names.
const definition = protoLoader.loadSync(
  ['scatter_gather/v1/leaf.proto', 'scatter_gather/v1/merge.proto', 'wordcount/v1/wordcount.proto'],
  { keepCase: true, longs: Number, enums: String, defaults: true, includeDirs: [FRAMEWORK_PROTOS, APP_PROTOS] },
);
const services = grpc.loadPackageDefinition(definition).scatter_gather.v1;

// The application's messages, as protobufjs types that encode to and decode from bytes.
const wordcount = new protobuf.Root().loadSync(path.join(APP_PROTOS, 'wordcount/v1/wordcount.proto'), {
  keepCase: true, // field names as in the .proto (top_k), like the services above
});
const types = {
  WordCountRequest: wordcount.lookupType('wordcount.v1.WordCountRequest'),
  WordCountPartial: wordcount.lookupType('wordcount.v1.WordCountPartial'),
  WordCountResponse: wordcount.lookupType('wordcount.v1.WordCountResponse'),
};

/** A gRPC error for callback(): the status code and a message for the caller. */
function rpcError(code, details) {
  return { code, details };
}

/** Wrap a plain object as an Any of protobufjs type `type`. */
function pack(type, object) {
  const name = type.fullName.replace(/^\./, '');
  return { type_url: TYPE_URL_PREFIX + name, value: Buffer.from(type.encode(type.fromObject(object)).finish()) };
}

/** Decode an Any as `type`; an INVALID_ARGUMENT error naming the expected type otherwise. */
function unpack(any, type) {
  const expected = type.fullName.replace(/^\./, '');
  const actual = any && any.type_url ? any.type_url.slice(any.type_url.lastIndexOf('/') + 1) : '';
  if (actual !== expected) {
    const got = actual ? `payload has type '${actual}'` : 'the request has no payload';
    throw rpcError(grpc.status.INVALID_ARGUMENT, `${got}, expected '${expected}'`);
  }
  try {
    return type.toObject(type.decode(any.value), { longs: Number, defaults: true });
  } catch (err) {
    throw rpcError(grpc.status.INVALID_ARGUMENT, `payload of type '${expected}' does not decode: ${err.message}`);
  }
}

/** The shard of a file: the first 4 bytes of the SHA-1 of its name, big-endian, modulo the shard count. */
function shardOf(name, shardCount) {
  return crypto.createHash('sha1').update(name, 'utf8').digest().readUInt32BE(0) % shardCount;
}

/**
 * TLS from the runtime's environment (docs/any-language.md): a certificate
 * and key to serve with, and for mutual TLS the CA whose client certificates
 * are required. Plaintext when none is set (loopback only).
 */
function serverCredentials() {
  const { SCATTER_TLS_CERT: cert, SCATTER_TLS_KEY: key, SCATTER_TLS_CLIENT_CA: clientCa } = process.env;
  if (!cert) return grpc.ServerCredentials.createInsecure();
  const keyPair = [{ cert_chain: fs.readFileSync(cert), private_key: fs.readFileSync(key) }];
  return clientCa
    ? grpc.ServerCredentials.createSsl(fs.readFileSync(clientCa), keyPair, true)
    : grpc.ServerCredentials.createSsl(null, keyPair, false);
}

/**
 * Serve `implementation` of `service` (e.g. 'Leaf') with health and reflection.
 * Health is NOT_SERVING until `load()` resolves; `state.ready` tells the
 * handlers whether to take calls. Resolves once listening; prints the
 * address on stderr as the Python SDKs do ("scatter: leaf listening on ...").
 */
async function serve({ role, service, implementation, state, load }) {
  const serviceName = `scatter_gather.v1.${service}`;
  const server = new grpc.Server();
  const health = new HealthImplementation({ '': 'NOT_SERVING', [serviceName]: 'NOT_SERVING' });
  const setHealth = (status) => ['', serviceName].forEach((name) => health.setStatus(name, status));
  health.addToServer(server);
  new ReflectionService(definition).addToServer(server);
  server.addService(services[service].service, implementation);

  const host = process.env.SCATTER_HOST || '127.0.0.1';
  const bindHost = host.includes(':') ? `[${host}]` : host;
  const port = await new Promise((resolve, reject) => {
    const address = `${bindHost}:${process.env.SCATTER_PORT || 0}`;
    server.bindAsync(address, serverCredentials(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  console.error(`scatter: ${role} listening on ${bindHost}:${port}`);

  let draining = false;
  const drain = (signal) => {
    if (draining) return;
    draining = true;
    state.ready = false; // calls that still arrive get UNAVAILABLE: the root tries another replica
    setHealth('NOT_SERVING');
    console.error(`scatter: ${role} draining on ${signal} (grace ${GRACE_MS} ms)`);
    const force = setTimeout(() => server.forceShutdown(), GRACE_MS);
    server.tryShutdown(() => {
      clearTimeout(force);
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => drain('SIGTERM'));
  process.on('SIGINT', () => drain('SIGINT'));

  await load();
  if (!draining) {
    state.ready = true;
    setHealth('SERVING');
  }
}

module.exports = { grpc, types, rpcError, pack, unpack, shardOf, serve };
