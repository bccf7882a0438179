#!/usr/bin/env bash
# `audit demo` at an older commit against this checkout, alternating, in one virtual environment.
#
#     git worktree add --detach /tmp/old-audit ab0b8ae
#     OLD=/tmp/old-audit ROUNDS="1 2" bash benchmarks/demo_side_by_side.sh
#
# The old code goes first on PYTHONPATH (its plugins folder too); it runs `audit demo --threads 2`, this checkout
# `audit demo` as a user types it. Run it with nothing else on the machine: the ratio is the figure.
set -u
: "${OLD:?set OLD to a worktree of the older commit}"
ROUNDS=${ROUNDS:-"1 2"}
for round in $ROUNDS; do
  for which in old new; do
    folder=$(mktemp -d)
    if [ "$which" = old ]; then
      env_path="$OLD:$OLD/plugins"; args="--threads 2"
    else
      env_path=""; args=""
    fi
    start=$(date +%s.%N)
    (cd "$folder" && PYTHONPATH="$env_path" audit demo --db "$folder/demo.db" $args > out.txt 2> err.txt)
    code=$?
    end=$(date +%s.%N)
    echo "round $round $which exit=$code $(python3 -c "print(round($end - $start, 1))") s reports=$(ls "$folder/.audit/reports" | wc -l) load=$(cut -d' ' -f1-3 /proc/loadavg)"
    rm -rf "$folder"
  done
done
