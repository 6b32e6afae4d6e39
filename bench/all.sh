#!/usr/bin/env bash
# `npm run bench`: every benchmark, one after the other (the network ones need root, as
# the tests do). Figures, not assertions; see docs/benchmarks.md. BENCH=render,dhcp,...
# picks a subset.
set -uo pipefail
cd "$(dirname "$0")/.."
all=(render fuzz events dhcp tftp http storm bundle boot install rehearse rehearse-vm power)
IFS=, read -r -a pick <<< "${BENCH:-${all[*]// /,}}"
status=0
for b in "${pick[@]}"; do
  echo "=== bench/$b.bench.ts"
  node "bench/$b.bench.ts" || { echo "bench $b failed (exit $?)"; status=1; }
  echo
done
exit $status
