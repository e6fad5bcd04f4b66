#!/bin/sh
# The image's entrypoint: `ROLE [ARGS...]`.
#
#   root   [FLAGS]  scatter root --config $SCATTER_ROOT_CONFIG (default /etc/scatter/root.toml)
#   leaf   [FLAGS]  python -m $SCATTER_LEAF_MODULE (default demo_search.leaf), the leaf SDK's flags
#   merge  [FLAGS]  python -m $SCATTER_MERGE_MODULE (default demo_search.merge), the merge SDK's flags
#   index  [FLAGS]  scatter demo index: the demo's index of this image's own Python stdlib docs
#   health ADDRESS  exit 0 when ADDRESS reports SERVING (for compose health checks and exec probes)
#   anything else runs as given, e.g. `scatter query ...` or `sh`.
#
# A leaf whose SCATTER_SHARD_INDEX is unset but SCATTER_REPLICAS_PER_SHARD=R is set
# takes its shard from its name, as a StatefulSet pod or compose service NAME-N:
# ordinal N serves shard N / R as replica N % R (leaves-0, leaves-1 -> shard 0, ...).
set -eu

role=${1:---help}
[ "$#" -gt 0 ] && shift
case "$role" in
  root)
    exec scatter root --config "${SCATTER_ROOT_CONFIG:-/etc/scatter/root.toml}" "$@" ;;
  leaf)
    if [ -z "${SCATTER_SHARD_INDEX:-}" ] && [ -n "${SCATTER_REPLICAS_PER_SHARD:-}" ]; then
      name=${SCATTER_POD_NAME:-$(hostname)}
      ordinal=${name##*-}
      case "$ordinal" in
        '' | *[!0-9]*)
          echo "entrypoint: cannot take a shard from the name '$name': expected NAME-N (or set SCATTER_SHARD_INDEX)" >&2
          exit 2 ;;
      esac
      SCATTER_SHARD_INDEX=$((ordinal / SCATTER_REPLICAS_PER_SHARD))
      SCATTER_REPLICA_ID=shard$SCATTER_SHARD_INDEX-replica$((ordinal % SCATTER_REPLICAS_PER_SHARD))
      export SCATTER_SHARD_INDEX SCATTER_REPLICA_ID
    fi
    exec python -m "${SCATTER_LEAF_MODULE:-demo_search.leaf}" "$@" ;;
  merge)
    exec python -m "${SCATTER_MERGE_MODULE:-demo_search.merge}" "$@" ;;
  index)
    exec scatter demo index "$@" ;;
  health)
    exec python /usr/local/lib/scatter/healthcheck.py "$@" ;;
  -h | --help)
    sed -n '2,14s/^# \{0,1\}//p' "$0" ;;
  *)
    exec "$role" "$@" ;;
esac
