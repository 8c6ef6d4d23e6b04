#!/usr/bin/env bash
# Checks that the Rust uapi (src/uapi.rs, via edu_dma::uapi_layout_report) and the C header
# (include/uapi/linux/edu_dma.h) agree on every size, offset, ioctl number and constant.
# Prints "ok uapi-layout" or "not ok uapi-layout - <reason>" and exits 0 / 1.
# Env: REPO (repo root, default: two levels up), CC (default cc), UAPI_INCLUDE (default $REPO/include).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
REPO=${REPO:-$(cd "$here/../.." && pwd)}
CC=${CC:-cc}
UAPI_INCLUDE=${UAPI_INCLUDE:-$REPO/include}
export PATH="$HOME/.cargo/bin:$PATH"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "not ok uapi-layout - $*"; exit 1; }

"$CC" -std=c11 -Wall -Wextra -Werror -I"$UAPI_INCLUDE" -o "$tmp/uapi_check" "$here/uapi_check.c" \
    || fail "C compile failed"
"$tmp/uapi_check" > "$tmp/c.txt" || fail "uapi_check failed"
(cd "$REPO/userspace-test" && cargo run -q -p edu-dma-cli --bin edudma -- uapi-layout) > "$tmp/rust.txt" \
    || fail "cargo run edudma uapi-layout failed"
[ -s "$tmp/c.txt" ] || fail "empty C report"
if diff -u --label C "$tmp/c.txt" --label Rust "$tmp/rust.txt" > "$tmp/diff"; then
    echo "# $(wc -l < "$tmp/c.txt") lines identical"
    echo "ok uapi-layout"
else
    sed 's/^/# /' "$tmp/diff"
    fail "C header and src/uapi.rs differ"
fi
