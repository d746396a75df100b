#!/usr/bin/env bash
# The test hooks are not in a build without the `test-hooks` feature (every
# `cargo build`, `cargo build --release` and `cargo install`): builds such a
# binary, checks that no hook's variable is named in it, and runs a demo
# with MINIMAX_DL_CRASH_AT set to a real crash point, which must finish
# (the test build aborts there: the same run is the control).
#
# Usage: .ci/release-hooks.sh plain    build the plain binary, check it
#        .ci/release-hooks.sh control  check that the test build's binary
#                                      (target/debug/minimax-dl after
#                                      `cargo test --no-run`) does abort
set -euo pipefail
cd "$(dirname "$0")/.."

point=after-rename
plain=target/ci-tools/minimax-dl-plain
hooks=(MINIMAX_DL_CRASH_AT MINIMAX_DL_BOOT_ID_FILE MINIMAX_DL_TEST_IDLE_POLL_MS
  MINIMAX_DL_TEST_CLOCK_SKEW_MS MINIMAX_DL_TEST_RATE_WINDOW_MS MINIMAX_DL_TEST_TASK_POLL_MS)

demo() {
  local bin=$1 dir
  dir=$(mktemp -d)
  # The demo runs the real engine on the simulator; its crash points are
  # those of every worker.
  local rc=0
  # (The braces keep bash's own "Aborted" notice out of the log.)
  { (cd "$dir" && MINIMAX_DL_CRASH_AT=$point "$OLDPWD/$bin" demo --files 2) > "$dir/out" 2>&1 || rc=$?; } 2>/dev/null
  cat "$dir/out" > "$plain.log"
  rm -rf "$dir"
  return $rc
}

case "${1:-}" in
  plain)
    # Dependencies built with the features the test build gives them (its
    # dev-dependencies add these), so that only our crate and sqlx (through
    # tokio-stream's features, which no flag reaches) are compiled again;
    # our crate unoptimised and without debug info (the dependencies keep
    # their own profile, so they are not rebuilt for it): about 1 minute of
    # CI instead of 5. Without these the check holds as well; it only costs
    # more.
    CARGO_PROFILE_DEV_OPT_LEVEL=0 CARGO_PROFILE_DEV_DEBUG=0 \
      cargo build --locked --bin minimax-dl \
      --features tokio/test-util,reqwest/json,serde/rc,serde_json/preserve_order
    mkdir -p "$(dirname "$plain")"
    cp target/debug/minimax-dl "$plain"
    for var in "${hooks[@]}"; do
      if grep -qaF "$var" "$plain"; then
        echo "a build without the test-hooks feature names $var"
        exit 1
      fi
    done
    if ! demo "$plain"; then
      cat "$plain.log"
      echo "a build without the test-hooks feature obeyed MINIMAX_DL_CRASH_AT=$point (or its demo failed)"
      exit 1
    fi
    echo "plain build: no test hook named, MINIMAX_DL_CRASH_AT=$point ignored"
    ;;
  control)
    if demo target/debug/minimax-dl || ! grep -q "crashing at $point" "$plain.log"; then
      cat "$plain.log"
      echo "the test build did not abort at MINIMAX_DL_CRASH_AT=$point: the check of the plain build proves nothing"
      exit 1
    fi
    echo "test build: aborted at $point, as it should"
    ;;
  *)
    echo "usage: $0 plain|control" >&2
    exit 2
    ;;
esac
