'use strict';
// Word-count leaf: counts the words of the text files of its shard.
//
//   SCATTER_SHARD_INDEX=0 SCATTER_SHARD_COUNT=3 SCATTER_PORT=50061 node leaf.js
//
// The runtime (`scatter up`) sets SCATTER_HOST, SCATTER_PORT,
// SCATTER_SHARD_INDEX and SCATTER_SHARD_COUNT. WORDCOUNT_DATA names the
// folder of .txt files (default: data/ beside this file); each leaf loads
// the files whose shardOf(name) is its shard.

const fs = require('node:fs/promises');
const path = require('node:path');
const { setImmediate: nextTurn } = require('node:timers/promises');
const { grpc, types, rpcError, pack, unpack, shardOf, serve } = require('./serving');

const SHARD = Number(process.env.SCATTER_SHARD_INDEX || 0);
const SHARDS = Number(process.env.SCATTER_SHARD_COUNT || 1);
const DATA = path.resolve(process.env.WORDCOUNT_DATA || path.join(__dirname, 'data'));
const MAX_CONCURRENCY = Number(process.env.SCATTER_MAX_CONCURRENCY || 64);
const START_DELAY_MS = Number(process.env.WORDCOUNT_START_DELAY_MS || 0); // stands in for a slow load

const state = { ready: false, inFlight: 0 };
const files = []; // one Map(word -> count) per file of this shard

/** Lower-cased ASCII words: the same rule as tests/test_node_mixed.py. */
function words(text) {
  return text.toLowerCase().match(/[a-z]+/g) || [];
}

async function load() {
  const names = (await fs.readdir(DATA)).filter((name) => name.endsWith('.txt')).sort();
  for (const name of names.filter((n) => shardOf(n, SHARDS) === SHARD)) {
    const counts = new Map();
    for (const word of words(await fs.readFile(path.join(DATA, name), 'utf8'))) {
      counts.set(word, (counts.get(word) || 0) + 1);
    }
    files.push(counts);
  }
  await new Promise((resolve) => setTimeout(resolve, START_DELAY_MS));
  console.error(`scatter: leaf shard ${SHARD}/${SHARDS} loaded ${files.length} files from ${DATA}`);
}

/** Sum the counts of this shard's files; gives up (returns null) as soon as `stopped()` says so. */
async function count(request, stopped) {
  const totals = new Map();
  for (const counts of files) {
    await nextTurn(); // let a cancellation or the deadline be noticed between files
    if (stopped()) return null;
    for (const [word, n] of counts) {
      if (word.startsWith(request.prefix) && word.length >= request.min_length) {
        totals.set(word, (totals.get(word) || 0) + n);
      }
    }
  }
  return { shard_index: SHARD, files: files.length, counts: [...totals].map(([word, n]) => ({ word, count: n })) };
}

function execute(call, callback) {
  const { payload, shard_index: shardIndex, shard_count: shardCount } = call.request;
  if (!state.ready) {
    return callback(rpcError(grpc.status.UNAVAILABLE, 'leaf is starting or draining; try another replica'));
  }
  // A wrong shard means a misconfigured root: fail loudly rather than answer with another shard's data.
  if (shardIndex !== SHARD || (shardCount && shardCount !== SHARDS)) {
    const asked = `shard ${shardIndex}${shardCount ? ` of ${shardCount}` : ''}`;
    const message = `this leaf serves shard ${SHARD} of ${SHARDS}; the request is for ${asked}`;
    return callback(rpcError(grpc.status.FAILED_PRECONDITION, message));
  }
  let request;
  try {
    request = unpack(payload, types.WordCountRequest);
  } catch (err) {
    return callback(err);
  }
  if (state.inFlight >= MAX_CONCURRENCY) {
    const message = `leaf is at its concurrency limit (${MAX_CONCURRENCY} calls in flight)`;
    return callback(rpcError(grpc.status.RESOURCE_EXHAUSTED, message));
  }

  // Stop working when the caller cancels (a losing hedge) or the deadline passes.
  let cancelled = false;
  call.on('cancelled', () => (cancelled = true));
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline; // Infinity when none
  const stopped = () => cancelled || Date.now() >= deadlineMs;

  state.inFlight += 1;
  count(request, stopped)
    .then((partial) => {
      if (partial === null) {
        // grpc-js has already ended the call; this status is for the log of an in-process caller only.
        const code = cancelled ? grpc.status.CANCELLED : grpc.status.DEADLINE_EXCEEDED;
        return callback(rpcError(code, 'stopped: the call was cancelled or its deadline passed'));
      }
      return callback(null, { payload: pack(types.WordCountPartial, partial) });
    })
    .catch((err) => callback(rpcError(grpc.status.INTERNAL, `${err.name}: ${err.message}`)))
    .finally(() => (state.inFlight -= 1));
}

serve({ role: 'leaf', service: 'Leaf', implementation: { Execute: execute }, state, load }).catch((err) => {
  console.error(`scatter: leaf failed to start: ${err.stack || err}`);
  process.exit(1);
});
