"""The C fast path (kernels/c/*.h) and the Numba fast path (kernels/numba/*.py) are twins, file
for file: each header's functions and its Numba module's functions correspond one to one, by name
(C ``fb_name`` is Numba ``name``) and in the same order, except for the language-specific functions
listed below, each with the reason it has no twin. A function added on one side only fails here.
"""

import ast
import re
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "kernels"

# C header <-> Numba module
PAIRS = ("math", "forms", "blocks", "chunk", "dispatch", "elements", "rank", "histogram", "margin")
PAIRS += ("loads",)
# C headers without a Numba twin
C_ONLY_FILES = {
    "codes.h": "the constants of kernels/__init__.py for C (tests/test_codes.py checks them)",
    "variant.h": "instantiates the headers once per instruction-set variant and type (Numba "
                 "compiles for its CPU and specialises by type)",
}

# Functions of a C header without a Numba twin, and why.
C_ONLY = {
    "math": {
        "fb_bits_f32": "bit cast by memcpy; Numba's bit casts are LLVM bitcasts (llvm.py)",
        "fb_from_bits_f32": "bit cast by memcpy; Numba: llvm.py",
        "fb_bits_f64": "bit cast by memcpy; Numba: llvm.py",
        "fb_from_bits_f64": "bit cast by memcpy; Numba: llvm.py",
    },
    "forms": {},
    "blocks": {
        "fb_q_block_inside": "a float32 block inside the clip bounds, unclamped: gcc's loop for it "
                             "is faster; Numba's q_block serves both cases",
        "fb_scatter_sums": "fb_scatter_groups' loop with `direct` as a constant (C's way to "
                           "specialise); Numba's scatter_groups holds both loops",
        "fb_scatter_factors": "fb_scatter_products' loop, as fb_scatter_sums; Numba's "
                              "scatter_products holds both loops",
        "fb_row_done": "end of a row summed in lanes; Numba writes it inline in chunk (as a "
                       "function, each of its arrays cost a reference count per row)",
        "fb_prefetch_block": "Numba's is the intrinsic llvm.prefetch_block (its loop emitted as "
                             "LLVM IR in the caller)",
    },
    "chunk": {},
    "histogram": {
        "fb_hist_label": "a label of any kind as a double (Numba reads each array in its dtype)",
        "fb_hist_group": "an int32 or int64 group id (Numba reads the ids in their dtype)",
        "fb_hist_values": "fb_hist_block's loop with the types and `logits` as constants (C's "
                          "way to specialise); Numba's hist_block is specialised by type",
    },
    "margin": {},
    "loads": {},
    "dispatch": {
        "fb_select": "picks the instruction-set variant at import; Numba compiles for its CPU",
        "fb_chunk_f32": "calls the selected variant's chunk kernel; Numba specialises chunk by "
                        "dtype",
        "fb_chunk_f64": "as fb_chunk_f32",
        "fb_score_f32": "calls the selected variant's scoring chunk kernel; Numba specialises "
                        "score_chunk by dtype",
        "fb_score_f64": "as fb_score_f32",
        "fb_element_chunk": "calls the selected variant's element kernel; Numba's element_chunk "
                            "is in elements.py",
    },
    "elements": {},
    "rank": {
        "fb_rank_label": "a label of any kind as a double (Numba specialises by dtype)",
        "fb_rank_pred": "a float or double prediction as a double (Numba: by dtype)",
        "fb_rank_kept": "whether an element is kept (Numba: inline in count, split)",
        "fb_rank_element": "an element's item and bucket through the argument struct (Numba: "
                           "inline in count, split)",
        "fb_rank_plain": "whether fb_count and fb_split take their loops for contiguous "
                         "float32 (C's way to specialise; Numba's are specialised by type)",
        "fb_rank_item": "a uint32 or uint64 item (Numba: by dtype)",
        "fb_rank_copy": "a range of items and indices copied by memcpy (Numba: slice assignment)",
    },
}

# Functions of a Numba module without a C twin, and why. A module-private helper (leading
# underscore) is language-specific by convention and must be here too.
NUMBA_ONLY = {
    "math": {
        "split_one": "the split of one product, for the group scatter (C calls fb_split with n=1)",
        "log_typed": "float32 or float64 log by argument type (C: FB_LOG of the FB_T template)",
        "exp_neg_typed": "float32 or float64 exp by argument type (C: FB_EXP of the template)",
        "one_like": "1 in the argument's type (C: FB_ONE of the template)",
        "as_type_of": "a value in another's type (C: a cast to FB_T)",
    },
    "forms": {
        "coefficients": "(a, b) in the label's type, chosen at compile time by coef None (C: "
                         "has_coef, a constant of the inlined loop)",
        "coefficients_f64": "the same in float64, for the gradients",
        "nll_as_type_of": "the clip-bound losses in p's dtype (C: casts in fb_loss_block)",
    },
    "blocks": {
        "_label_flags": "a label's two checks as booleans (C: inline in fb_load_labels)",
        "_clamped_q": "q of one element (C: inline in fb_q_block)",
        "q_block_compensated": "fb_q_block for float64 p (C: one function, by sizeof(FB_T))",
        "_clean_element": "part of fb_loss_block: whether an element needs no check",
        "_clean_block": "part of fb_loss_block: whether a block needs no check, in a loop of its "
                        "own (a running flag in Numba's loss loops slows them; gcc's is a "
                        "vectorised reduction)",
        "check_block": "part of fb_loss_block: the error bits, in a loop of its own",
        "_element_value": "part of fb_loss_block: the loss of a masked, NaN or omitted element",
        "_store_loss": "part of fb_loss_block: store a loss, checked or taken to be clean",
        "_loss_hard": "fb_loss_block's loop for hard labels (LLVM vectorises one form per loop)",
        "loss_soft": "fb_loss_block's loop for soft labels, optionally loading them too",
        "_loss_logit": "fb_loss_block's loop for logits",
        "count_weights": "part of fb_loss_block: weights zeroed where masked or omitted",
        "_grad_value": "part of fb_grad_block: weight, scale, NaN and mask of a gradient element",
        "_grad_prob_block": "fb_grad_block's loop for probabilities",
        "exp_abs_block": "exp(-|x|) of a block in a float32-only loop (C: inline in fb_chunk)",
        "_grad_logit_block": "fb_grad_block's loop for logits",
        "multiply_compensated": "the float64 lane products with their roundings (C: inline in "
                                 "fb_chunk)",
        "multiply_into": "per-column products on views (C: an omp simd loop in fb_chunk)",
        "add_weighted_into": "per-column sums on views (C: an omp simd loop in fb_chunk)",
        "_score_values": "part of fb_score_block: the checks, NaN and counting of an element",
        "_score_loop": "fb_score_block's loop for one form (C: `form`, a constant of the inlined "
                       "loop)",
    },
    "chunk": {
        "_buffer": "a 64-byte aligned block buffer (C: aligned arrays on the stack)",
    },
    "histogram": {
        "_hist_values": "hist_block's loop body (C: the loop of fb_hist_values)",
        "_hist_pass": "the parallel loop over chunks (C: the prange loop of hist_pass in "
                      "kernels/cython_kernels.pyx)",
        "hist_pass": "the Python entry; its twin is hist_pass in kernels/cython_kernels.pyx",
        "_calib_pass": "the parallel loop over stripes (C: the prange loop of calib_pass in "
                       "kernels/cython_kernels.pyx)",
        "calib_pass": "the Python entry; its twin is calib_pass in kernels/cython_kernels.pyx",
    },
    "dispatch": {
        "_fast_pass": "a range of chunks, for one form (C: the body of the prange loop of "
                      "fast_pass in kernels/cython_kernels.pyx)",
        "_flat": "strided input as a contiguous array and a stride (C: _flat_address in "
                 "kernels/cython_kernels.pyx)",
        "_reset_pool": "no threads in a forked child (C: OpenMP's)",
        "run_chunks": "ranges of chunks on threads (C: the prange loop of fast_pass)",
        "_score_pass": "the same for the scoring pass (C: the same prange loop)",
        "read_only": "read-only views: writable and read-only inputs share one compilation",
        "fast_pass": "the Python entry; its twin is fast_pass in kernels/cython_kernels.pyx",
    },
    "elements": {
        "as_double": "a loaded value as float64, float16 bits decoded (C: macros in fb_load)",
        "_make_pass": "the parallel loop over chunks, one per form (C: the prange loop of element_pass in "
                         "kernels/cython_kernels.pyx)",
        "element_pass": "the Python entry; its twin is element_pass in kernels/cython_kernels.pyx",
    },
    "rank": {
        "_count": "the parallel loop of count (C: _count in kernels/cython_kernels.pyx)",
        "_split": "the parallel loop of split (C: _split in kernels/cython_kernels.pyx)",
        "_digit_histograms": "the parallel histogram pass (C: in _sort_big of "
                             "kernels/cython_kernels.pyx)",
        "_sort_big": "the parallel radix passes (C: _sort_big in kernels/cython_kernels.pyx)",
        "_sort_small_all": "the parallel loop of sort_small (C: in _sort_all of "
                           "kernels/cython_kernels.pyx)",
        "_sort_one_big": "one big bucket's sort by all threads (C: in _sort_all of "
                         "kernels/cython_kernels.pyx)",
        "_sort_all": "the buckets' sorts (C: _sort_all in kernels/cython_kernels.pyx)",
        "_walk_big": "the parallel walk over ranges (C: _walk_big in kernels/cython_kernels.pyx)",
        "_walk_small_all": "the parallel loop of walk over slots (C: in _walk_all of "
                           "kernels/cython_kernels.pyx)",
        "_sort_walk_small": "the parallel loop of sort_small and walk per bucket (C: in "
                            "_sort_walk of kernels/cython_kernels.pyx)",
        "_sort_walk": "the buckets' sorts and walks (C: _sort_walk in "
                      "kernels/cython_kernels.pyx)",
        "_walk_all": "the slots' walks (C: _walk_all in kernels/cython_kernels.pyx)",
        "_sum_down": "a fixed-order sum (C: _sum_down in kernels/cython_kernels.pyx)",
        "rank": "the Python entry; its twin is rank in kernels/cython_kernels.pyx",
        "_values": "predictions back from items (Python; copy in kernels/cython_kernels.pyx)",
        "_schedule": "which buckets all threads sort, the others' order (Python; copy in "
                     "kernels/cython_kernels.pyx)",
    },
    "margin": {
        "_margin_pass": "the parallel loop over chunks (C: the prange loop of margin_pass in "
                        "kernels/cython_kernels.pyx)",
        "_read_only": "read-only views: writable and read-only inputs share one compilation",
        "margin_pass": "the Python entry; its twin is margin_pass in kernels/cython_kernels.pyx",
    },
    "loads": {
        "value_dtype": "the dtype of the math by p's type, at compile time (C: FB_T)",
        "predictions": "a block's predictions, a view or decoded, by p's type at compile time (C: "
                       "a pointer into p or hbuf in fb_chunk)",
    },
}

# kernels/numba/llvm.py: Numba-only intrinsics (C has each from its compiler).
LLVM_ONLY = {
    "JIT": "the jit options of every kernel function",
    "INLINE": "the same, inlined in Numba's IR",
    "bits_f32": "bit cast (C: fb_bits_f32 by memcpy)",
    "from_bits_f32": "bit cast (C: fb_from_bits_f32)",
    "bits_f64": "bit cast (C: fb_bits_f64)",
    "from_bits_f64": "bit cast (C: fb_from_bits_f64)",
    "fma": "llvm.fma (C: __builtin_fma, FB_FMA)",
    "prefer_wide_vectors": "LLVM's prefer-vector-width=512 for a function (C: gcc's target "
                           "attribute)",
    "prefetch_block": "llvm.prefetch over the next block's streams (C: fb_prefetch_block, "
                      "__builtin_prefetch)",
    "add_lanes": "lane sums kept in vector registers (C: gcc keeps the omp simd sums there)",
    "multiply_lanes": "lane products kept in vector registers (C: as add_lanes)",
}

# A function definition at the start of a line: `FB_INLINE T FB_NAME(fb_x)(`, `static T fb_x(`...
_C_DEFINITION = re.compile(
    r"^(?:FB_INLINE|static)\b[^;=\n]*?\b(?:(?:FB_NAME|FB_V)\((fb_\w+)\)|(fb_\w+))\s*\(", re.M)


def c_functions(header):
    """The functions a C header defines, in order."""
    return [a or b for a, b in _C_DEFINITION.findall((KERNELS / "c" / header).read_text())]


def _is_overload(node):
    """An @overload implementation: it is named by its stub, which is listed instead."""
    return any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "overload"
               for d in node.decorator_list)


def numba_functions(module):
    """The functions a Numba module defines, in order (module-level intrinsics built by a call, as
    llvm.py's bit casts, included)."""
    names = []
    for node in ast.parse((KERNELS / "numba" / module).read_text()).body:
        if isinstance(node, ast.FunctionDef) and not _is_overload(node):
            names.append(node.name)
        elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
              and getattr(node.value.func, "id", "") in ("_bitcast", "dict")):
            names.extend(t.id for t in node.targets)
    return names


def twin(c_name):
    """The Numba name of a C function: fb_name -> name."""
    assert c_name.startswith("fb_"), c_name
    return c_name[3:]


@pytest.mark.parametrize("name", PAIRS)
def test_twin_files_define_the_same_functions_in_the_same_order(name):
    c = [twin(f) for f in c_functions(f"{name}.h") if f not in C_ONLY[name]]
    numba = [f for f in numba_functions(f"{name}.py") if f not in NUMBA_ONLY[name]]
    assert c == numba


@pytest.mark.parametrize("name", PAIRS)
def test_language_specific_lists_are_current(name):
    """Every listed function exists; every private Numba helper is listed; a listed C function
    really has no twin (its Numba name is not used on the other side)."""
    c = c_functions(f"{name}.h")
    numba = numba_functions(f"{name}.py")
    assert set(C_ONLY[name]) <= set(c)
    assert set(NUMBA_ONLY[name]) <= set(numba)
    assert {f for f in numba if f.startswith("_")} <= set(NUMBA_ONLY[name])
    assert not {twin(f) for f in C_ONLY[name]} & set(numba)
    assert all(reason.strip() for reason in (*C_ONLY[name].values(), *NUMBA_ONLY[name].values()))


def test_every_header_and_module_is_paired():
    headers = {p.name for p in (KERNELS / "c").glob("*.h")}
    assert headers == {f"{name}.h" for name in PAIRS} | set(C_ONLY_FILES)
    modules = {p.name for p in (KERNELS / "numba").glob("*.py")}
    assert modules == {f"{name}.py" for name in PAIRS} | {"llvm.py", "general.py", "__init__.py"}


def test_no_numba_module_imports_a_siblings_private_names():
    found = []
    for module in sorted((KERNELS / "numba").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                found += [(module.name, a.name) for a in node.names if a.name.startswith("_")]
    assert not found


def test_llvm_module_lists_its_intrinsics():
    public = [f for f in numba_functions("llvm.py") if not f.startswith("_")]
    assert set(public) == set(LLVM_ONLY)


# The general pass: kernels/cython_kernels.pyx (up to its fast-path part) <-> kernels/numba/general.py,
# same names. Functions of one side only, and why:
CYTHON_GENERAL_ONLY = {
    "run_chunk": "the rows of one chunk (Numba's _bce_pass has that loop in its prange body)",
    "_label_operand": "labels in a dtype of the fused label type, converted if need be",
    "_same_weight_dtype": "both weights in one dtype of the fused weight type",
    "_after_fork_in_child": "GNU OpenMP cannot start threads in a child forked after it ran",
}
NUMBA_GENERAL_ONLY = {}
_PYX_DEFINITION = re.compile(r"^(?:cdef|cpdef|def)\s+(?:inline\s+)?(?:[\w\[\]:, ]+\s+)?(\w+)\(", re.M)


def test_general_pass_twins():
    pyx = (KERNELS / "cython_kernels.pyx").read_text()
    general = pyx[:pyx.index("# Fast path")]
    cython = [f for f in _PYX_DEFINITION.findall(general) if f not in CYTHON_GENERAL_ONLY]
    numba = [f for f in numba_functions("general.py") if f not in NUMBA_GENERAL_ONLY]
    assert cython == numba


@pytest.mark.parametrize("name", PAIRS)
def test_twin_files_name_each_other(name):
    """The header comment of each twin file names its twin."""
    c_text = (KERNELS / "c" / f"{name}.h").read_text()
    numba_text = (KERNELS / "numba" / f"{name}.py").read_text()
    assert f"kernels/numba/{name}.py" in c_text[:600]
    assert f"kernels/c/{name}.h" in numba_text[:600]


LLVM_ONLY["KERNEL"] = "the jit options of every kernel function, uncached (an overload's body)"
NUMBA_ONLY["elements"]["focal_hard_block"] = ("the float32 hard-label focal block or -1, an overload "
                                              "by dtype (C: focal32 in fb_element_chunk)")
NUMBA_ONLY["elements"]["_make_pass"] = ("a range of chunks, one kernel per form, run on threads by "
                                        "dispatch.run_chunks (C: the prange loop of element_pass "
                                        "in kernels/cython_kernels.pyx)")
