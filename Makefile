# The two commands of the README: `make demo` and `make test`. Both create .venv/ when it is
# missing and (re)install the project into it, with the compiled extension, when its build inputs
# change.
PYTHON_FOR_VENV ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.fastbce-installed

.PHONY: demo test install bench clean

demo: $(STAMP)
	$(VENV)/bin/fastbce demo

test: $(STAMP)
	$(PYTHON) -m pytest -n 2 --dist loadfile

install: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard kernels/*.pyx kernels/*.pxd kernels/c/*.h)
	test -x $(PYTHON) || $(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test,bench,io,dask]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info kernels/*.c kernels/*.so
