# edu-dma: the two commands a newcomer needs are `make demo` and `make check` (see README.md).
# Everything else is a building block of those two.

ROOT     := $(CURDIR)
CACHE    ?= $(or $(EDU_DMA_CACHE),$(HOME)/.cache/edu-dma)
KDIR     ?= $(CACHE)/build/base
export PATH := $(HOME)/.cargo/bin:$(PATH)
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib
KMAKE    := $(MAKE) -C $(KDIR) M=$(ROOT) LLVM=-19

.PHONY: all module setup kernel kernel-debug userspace lint fmt check-uapi check demo bench clean

all: module

setup:
	scripts/setup

# The kernel is built (once, cached by its inputs) when the default KDIR is missing.
kernel:
	scripts/build-kernel base >/dev/null

kernel-debug:
	scripts/build-kernel debug >/dev/null

module:
	@if [ "$(KDIR)" = "$(CACHE)/build/base" ]; then scripts/build-kernel base >/dev/null; fi
	$(KMAKE) modules

userspace:
	scripts/setup
	cd userspace-test && cargo build --release --quiet

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
