# The two commands of the README: `make demo` and `make test`. Both create .venv/ when it is
# missing and (re)install the project into it, with the compiled extension, when its build inputs
# change.
PYTHON_FOR_VENV ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.fastbce-installed

.PHONY: demo test install bench clean check-aarch64

demo: $(STAMP)
	$(VENV)/bin/fastbce demo

test: $(STAMP)
	$(PYTHON) -m pytest -n 2 --dist loadfile --durations=15

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard kernels/*.pyx kernels/*.pxd kernels/c/*.h)
	test -x $(PYTHON) || $(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test,bench,io,dask,boosting]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info kernels/*.c kernels/*.so

# The C fast path on aarch64, checked on this x86-64 machine: tests/native/chunk_harness.c runs the
# chunk kernels on fixed inputs, cross-compiled (Debian: apt-get install gcc-aarch64-linux-gnu
# qemu-user) and run under qemu, and compiled for x86-64. Its aarch64 variant (NEON, exact FMA)
# must give the bits of the x86-64 FMA variants (v4 and v3), and the baseline (no FMA) must not.
CROSS_CC ?= aarch64-linux-gnu-gcc
QEMU_AARCH64 ?= qemu-aarch64
NATIVE := build/native
HARNESS_FLAGS := -O3 -std=gnu11 -fopenmp-simd -ffp-contract=off -fno-trapping-math -Wall -Ikernels
HARNESS_INPUTS := tests/native/chunk_harness.c $(wildcard kernels/c/*.h)

$(NATIVE)/harness-x86_64: $(HARNESS_INPUTS)
	mkdir -p $(NATIVE)
	$(CC) $(HARNESS_FLAGS) -o $@ $< -lm

$(NATIVE)/harness-aarch64: $(HARNESS_INPUTS)
	mkdir -p $(NATIVE)
	$(CROSS_CC) $(HARNESS_FLAGS) -static -o $@ $< -lm

check-aarch64: $(NATIVE)/harness-x86_64 $(NATIVE)/harness-aarch64
	$(QEMU_AARCH64) $(NATIVE)/harness-aarch64 > $(NATIVE)/aarch64.txt
	$(QEMU_AARCH64) $(NATIVE)/harness-aarch64 base > $(NATIVE)/aarch64-base.txt
	$(NATIVE)/harness-x86_64 v4 > $(NATIVE)/x86_64-v4.txt
	$(NATIVE)/harness-x86_64 v3 > $(NATIVE)/x86_64-v3.txt
	head -n 1 $(NATIVE)/aarch64.txt | grep -q 'aarch64 (NEON, FMA)'
	head -n 1 $(NATIVE)/x86_64-v3.txt | grep -q 'FMA)'
	@for x86 in v4 v3; do tail -n +2 $(NATIVE)/x86_64-$$x86.txt > $(NATIVE)/x86_64-$$x86.bits; done
	@tail -n +2 $(NATIVE)/aarch64.txt > $(NATIVE)/aarch64.bits
	@tail -n +2 $(NATIVE)/aarch64-base.txt > $(NATIVE)/aarch64-base.bits
	cmp $(NATIVE)/aarch64.bits $(NATIVE)/x86_64-v3.bits
	cmp $(NATIVE)/aarch64.bits $(NATIVE)/x86_64-v4.bits
	! cmp -s $(NATIVE)/aarch64-base.bits $(NATIVE)/aarch64.bits
	@n=$$(grep -c chunk $(NATIVE)/aarch64.bits); g=$$(grep -c 'grad hash' $(NATIVE)/aarch64.bits); \
	  a=$$(head -n 1 $(NATIVE)/aarch64.txt | cut -c10-); v4=$$(head -n 1 $(NATIVE)/x86_64-v4.txt | cut -c10-); \
	  v3=$$(head -n 1 $(NATIVE)/x86_64-v3.txt | cut -c10-); \
	  echo "check-aarch64: $$n partial sums and $$g gradient hashes of '$$a' under qemu equal those of" \
	    "'$$v4' and '$$v3' bit for bit; the baseline variant (no FMA) differs"
