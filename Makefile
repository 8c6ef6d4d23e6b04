# edu-dma: the two commands a newcomer needs are `make demo` and `make check` (see README.md).
# Everything else is a building block of those two.

ROOT     := $(CURDIR)
CACHE    ?= $(or $(EDU_DMA_CACHE),$(HOME)/.cache/edu-dma)
KDIR     ?= $(CACHE)/build/base
export PATH := $(HOME)/.cargo/bin:$(PATH)
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib
# An arm64 kernel build as KDIR (scripts/build-kernel arm64) cross-builds the module for it.
KARCH    := $(if $(shell grep -sx CONFIG_ARM64=y $(KDIR)/.config),arm64)
KMAKE    := $(MAKE) -C $(KDIR) M=$(ROOT) LLVM=-19 $(if $(KARCH),ARCH=$(KARCH))

.PHONY: all module setup kernel kernel-debug kernel-arm64 userspace userspace-arm64 lint fmt check-uapi check demo bench clean

all: module

setup:
	scripts/setup

# The kernel is built (once, cached by its inputs) when the default KDIR is missing.
kernel:
	scripts/build-kernel base >/dev/null

kernel-debug:
	scripts/build-kernel debug >/dev/null

# The arm64 board's kernel (cross-built); its module: make KDIR=$(CACHE)/build/arm64 module
kernel-arm64:
	scripts/build-kernel arm64 >/dev/null

module:
	@if [ "$(KDIR)" = "$(CACHE)/build/base" ]; then scripts/build-kernel base >/dev/null; fi
	$(KMAKE) modules

userspace:
	scripts/setup
	cd userspace-test && cargo build --release --quiet

# edu-tests and edudma for the arm64 board: static musl binaries in
# userspace-test/target/aarch64-unknown-linux-musl/release (linked by rust-lld).
userspace-arm64:
	EDU_DMA_ARM64=1 scripts/setup
	cd userspace-test && cargo build --release --quiet --target aarch64-unknown-linux-musl -p edu-tests -p edu-dma-cli

# rustfmt with the kernel's settings, a CLIPPY=1 module build, cargo clippy for userspace.
lint: module
	scripts/lint

fmt:
	rustfmt --config-path $(KDIR)/source/.rustfmt.toml --edition 2021 src/*.rs src/raw/*.rs

check-uapi: userspace
	userspace-test/uapi-check/run.sh

check:
	scripts/check

demo:
	scripts/demo

bench:
	scripts/bench

clean:
	-$(KMAKE) clean
	rm -rf userspace-test/target
