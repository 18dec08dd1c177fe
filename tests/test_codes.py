"""kernels/__init__.py is the one source of the kernels' codes and sizes: the C headers restate them
(kernels/c/*.h ``#define FB_NAME value``), the Cython module takes them from kernels/c/codes.h,
and the Numba modules import them. Every restated value must equal the Python one."""

import ast
import re
from pathlib import Path

from fastbce import _kernels as codes

KERNELS = Path(__file__).resolve().parents[1] / "kernels"

# #defines with a number that are not codes of kernels/__init__.py, and why
C_INTERNAL = {
    "F64_LANES": "float64 values per vector register of an instruction-set variant",
    "EXACT_FMA": "whether a variant's FB_FMA rounds once",
    "MULTI_VARIANT": "whether the build has the v4 and v3 variants",
    "AARCH64_VARIANT": "whether the build has the aarch64 variant (NEON, FMA)",
    "FORM_HARD": "a form of fb_loss_block (Numba passes booleans)",
    "FORM_SOFT": "a form of fb_loss_block",
    "FORM_LOGIT": "a form of fb_loss_block",
    "EL_HARD": "a form of fb_loss_elements (Numba: HARD in kernels/numba/elements.py)",
    "EL_SOFT": "a form of fb_loss_elements",
    "EL_LOGIT": "a form of fb_loss_elements",
}
_DEFINE = re.compile(r"^#define FB_(\w+)[ \t]+(0x[0-9a-fA-F.]+p[-+]?\d+|-?\d+(?:\.\d*)?)\b", re.M)


def c_defines():
    """{name without FB_: [values]} of the numeric #defines of kernels/c/*.h."""
    found = {}
    for header in sorted((KERNELS / "c").glob("*.h")):
        for name, text in _DEFINE.findall(header.read_text()):
            value = float.fromhex(text) if "p" in text.lower() else float(text)
            found.setdefault(name, []).append(value)
    return found


def python_codes():
    """{name: value} of kernels/__init__.py's numeric constants."""
    return {name: value for name, value in vars(codes).items()
            if name.isupper() and isinstance(value, (int, float)) and not isinstance(value, bool)}


def test_every_c_define_equals_the_python_code():
    defines = c_defines()
    python = python_codes()
    assert defines
    for name, values in defines.items():
        if name in C_INTERNAL:
            continue
        assert name in python, f"FB_{name} is not in kernels/__init__.py"
        assert values == [python[name]] * len(values), name


def test_every_python_code_is_in_codes_h():
    text = (KERNELS / "c" / "codes.h").read_text()
    found = {name: (float.fromhex(v) if "p" in v.lower() else float(v))
             for name, v in _DEFINE.findall(text)}
    assert found == {name: float(value) for name, value in python_codes().items()}


def test_cython_takes_its_codes_from_codes_h():
    """The .pyx declares the codes it uses in an enum of kernels/c/codes.h, without values."""
    text = (KERNELS / "cython_kernels.pyx").read_text()
    block = re.search(r'cdef extern from "c/codes.h":\n    enum:\n((?:        \w+\n)+)', text)
    assert block is not None
    names = block.group(1).split()
    assert names and all(name.startswith("FB_") for name in names)
    defined = set(c_defines())
    assert {name[3:] for name in names} <= defined
    assert not re.search(r"^\s*(?:FB_)?(?:MODE|NAN|FLAG)_\w+\s*=\s*\d", text, re.M)


def test_cython_codes_at_run_time():
    from fastbce._kernels import cython_kernels

    for name, value in cython_kernels.CODES.items():
        assert getattr(codes, name) == value, name


def test_numba_modules_import_the_codes():
    """No Numba module assigns a name of kernels/__init__.py's codes: it imports them."""
    python = set(python_codes())
    for module in sorted((KERNELS / "numba").glob("*.py")):
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    assert not (isinstance(target, ast.Name) and target.id in python), (
                        module.name, target.id)
