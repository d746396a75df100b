#!/usr/bin/env bash
# Runs .ci/run the way CI and a new user meet it: a fresh clone of the
# committed HEAD (nothing uncommitted), an empty CARGO_HOME (no crate
# cache, no cargo-fuzz) and an empty target/. A green `.ci/run` in a warm
# checkout can hide a missing install or fetch step; this cannot.
#
#   contrib/ci-fresh.sh [WORKDIR]     # default: a new directory under /tmp
#
# Run it before resolving anything that changes .ci/run, the dependencies
# or the toolchain. It prints the wall time of the whole run at the end.
# The rustup toolchain itself (RUSTUP_HOME) is kept: a fresh machine of
# this kind has it installed, and no step may download another.
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=${1:-$(mktemp -d /tmp/minimax-dl-ci-fresh.XXXXXX)}
mkdir -p "$work"
rm -rf "$work/checkout" "$work/cargo-home"
git clone --quiet --no-local "$repo" "$work/checkout"
mkdir -p "$work/cargo-home"
# cargo and rustc stay reachable through rustup's proxies wherever they are,
# but nothing else installed beside them: a `cargo install`ed tool there
# (cargo-fuzz, say) is not on a fresh machine, and .ci/run must install it.
cargo_bin=$(dirname "$(command -v cargo)")
toolchain_bin="$work/toolchain-bin"
rm -rf "$toolchain_bin"
mkdir -p "$toolchain_bin"
for tool in "$cargo_bin"/*; do
  if [ -L "$tool" ] || [ "$(basename "$tool")" = rustup ]; then
    ln -s "$(readlink -f "$tool")" "$toolchain_bin/$(basename "$tool")"
  fi
done
echo "ci-fresh: $(git -C "$work/checkout" rev-parse --short HEAD) in $work (CARGO_HOME empty)"
start=$SECONDS
rc=0
(
  cd "$work/checkout"
  export CARGO_HOME="$work/cargo-home"
  # The cargo bin dir leaves PATH too (it holds cargo-installed tools).
  rest=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$cargo_bin" | paste -sd: -)
  export PATH="$CARGO_HOME/bin:$toolchain_bin:$rest"
  unset CARGO_TARGET_DIR
  CI=true bash .ci/run
) || rc=$?
elapsed=$((SECONDS - start))
echo "ci-fresh: .ci/run exited $rc after ${elapsed} s ($((elapsed / 60)) min $((elapsed % 60)) s)"
exit $rc
