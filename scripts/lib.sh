# shellcheck shell=bash disable=SC2034 # ROOT and CACHE are for the scripts that source this
# Shared shell helpers for scripts/: cache location, logging, kernel source/build paths.
CACHE="${EDU_DMA_CACHE:-$HOME/.cache/edu-dma}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
export LIBCLANG_PATH="${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}"
log() { printf '[edu-dma] %s\n' "$*" >&2; }
die() { printf '[edu-dma] error: %s\n' "$*" >&2; exit 1; }
kernel_src() { echo "${KERNEL_SRC:-$CACHE/src}"; }
