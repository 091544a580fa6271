#!/usr/bin/env bash
# The layering rule (src/lib.rs, ARCHITECTURE): each layer of src/ refers
# only to the layers before it in LAYERS (and to itself). Checks every
# `crate::<module>` path outside comments and test modules; a path through a
# crate-root re-export of a runtime type counts as the runtime.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYERS=(config time sync task pool mesh pile net metrics http runtime shard)

status=0
for i in "${!LAYERS[@]}"; do
  layer=${LAYERS[$i]}
  above=("${LAYERS[@]:$((i + 1))}")
  [ ${#above[@]} -eq 0 ] && continue
  pattern="crate::($(IFS='|'; echo "${above[*]}"))\b"
  # Runtime types through the crate root.
  if [ "$layer" != runtime ]; then
    pattern="$pattern|crate::(Runtime|RuntimeHandle|RuntimeError|Finished|FAILURE_GRACE)\b"
  fi
  files=$(find "src/$layer" "src/$layer.rs" -name '*.rs' ! -name '*tests.rs' 2>/dev/null || true)
  for file in $files; do
    # Code only: stop at the first test module, skip comment lines.
    hits=$(awk '/^#\[cfg\(.*test/ { exit } !/^[[:space:]]*\/\// { print FILENAME ":" FNR ": " $0 }' "$file" |
      grep -E "$pattern" || true)
    if [ -n "$hits" ]; then
      echo "layer '$layer' refers to a layer above it:"
      echo "$hits"
      status=1
    fi
  done
done
[ $status -eq 0 ] && echo "layers: every layer refers only to the ones below it"
exit $status
