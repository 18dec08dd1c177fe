"""Build script: the package metadata lives in pyproject.toml; this file adds the compiled
extension built from kernels/ (see the Cython/OpenMP backend)."""

from setuptools import setup

setup()
