#!/usr/bin/env bash
# Plants each bug of scripts/mutants/*.patch, one at a time, in a scratch
# copy of the work tree, and runs the model-based fault tester against it
# (SEEDS seeds from FIRST, long traffic; it stops at the first failing
# seed), then the runtime's tests. A mutant is killed when either fails.
# Prints one line per mutant and a summary; exits non-zero if any mutant
# survives.
#
#   bash scripts/mutants.sh                 # every mutant
#   bash scripts/mutants.sh issue7-1-*      # some
#   SEEDS=10 bash scripts/mutants.sh
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seeds=${SEEDS:-6}
first=${FIRST:-1}
pattern=${1:-*}
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/tree" >/dev/null 2>&1; rm -rf "$work"' EXIT
git worktree add --detach "$work/tree" HEAD >/dev/null 2>&1 || { echo "cannot make a scratch work tree"; exit 2; }
# The scratch tree gets the checkout's uncommitted changes too.
git diff HEAD | git -C "$work/tree" apply --allow-empty 2>/dev/null
killed=0 survived=0
for patch in scripts/mutants/$pattern.patch; do
  name=$(basename "$patch" .patch)
  what=$(head -1 "$patch" | sed 's/^# //')
  git -C "$work/tree" apply "$root/$patch" || { echo "$name: does not apply"; survived=$((survived+1)); continue; }
  start=$(date +%s)
  verdict=survived by=""
  log="$work/$name.log"
  if ! (cd "$work/tree" && go test -count=1 -failfast -timeout 30m -tags invgen_failpoints -run '^TestRobustness$' ./internal/robustness \
        -args -robustness.long -robustness.seeds="$seeds" -robustness.first="$first" -robustness.shrink=1ms) >"$log" 2>&1; then
    verdict=killed by="tester ($(grep -oE 'seed [0-9]+: [0-9]+ violations \([^)]*\)' "$log" | head -1))"
  elif ! (cd "$work/tree" && go test -count=1 -timeout 20m ./internal/contract ./runtime/...) >>"$log" 2>&1; then
    verdict=killed by="runtime tests ($(grep -oE '^--- FAIL: [A-Za-z0-9_]+' "$log" | head -3 | sed 's/--- FAIL: //' | paste -sd, -))"
  fi
  git -C "$work/tree" apply -R "$root/$patch"
  [ "$verdict" = killed ] && killed=$((killed+1)) || survived=$((survived+1))
  printf '%-34s %-8s %4ss  %s\n    %s\n' "$name" "$verdict" "$(( $(date +%s) - start ))" "$by" "$what"
done
echo "mutants: $killed killed, $survived survived"
[ "$survived" -eq 0 ]
