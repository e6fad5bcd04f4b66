'use strict';
// Word-count merge: sums the shards' counts and returns the top words.
//
//   SCATTER_PORT=50060 node merge.js
//
// Failed shards (TIMEOUT, ERROR, UNAVAILABLE, SKIPPED) carry no payload and
// are left out; the root reports them to the client in the coverage.

const { grpc, types, rpcError, pack, unpack, serve } = require('./serving');

const DEFAULT_TOP_K = 10;
const state = { ready: false };

function merge(call, callback) {
  if (!state.ready) {
    return callback(rpcError(grpc.status.UNAVAILABLE, 'merge is starting or draining'));
  }
  const totals = new Map();
  const answer = { top: [], total_words: 0, files: 0, shard_indices: [] };
  let request;
  try {
    request = unpack(call.request.payload, types.WordCountRequest);
    for (const result of call.request.results) {
      if (!result.report || result.report.status !== 'SHARD_STATUS_OK') continue;
      let partial;
      try {
        partial = unpack(result.payload, types.WordCountPartial);
      } catch (err) {
        throw rpcError(err.code, `shard ${result.report.shard_index}: ${err.details}`);
      }
      answer.files += partial.files;
      answer.shard_indices.push(result.report.shard_index);
      for (const { word, count } of partial.counts) {
        totals.set(word, (totals.get(word) || 0) + count);
        answer.total_words += count;
      }
    }
  } catch (err) {
    return callback(err);
  }
  const byCountThenWord = (a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  answer.top = [...totals]
    .sort(byCountThenWord)
    .slice(0, request.top_k || DEFAULT_TOP_K)
    .map(([word, count]) => ({ word, count }));
  answer.shard_indices.sort((a, b) => a - b);
  return callback(null, { payload: pack(types.WordCountResponse, answer) });
}

serve({ role: 'merge', service: 'Merge', implementation: { Merge: merge }, state, load: async () => {} }).catch(
  (err) => {
    console.error(`scatter: merge failed to start: ${err.stack || err}`);
    process.exit(1);
  },
);
