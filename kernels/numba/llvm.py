"""Numba-only pieces of the Numba kernels, written as LLVM IR: what C gets from its compiler.

The bit casts, the fused multiply-add (llvm.fma where C writes __builtin_fma), the per-function
vector-width preference (C: gcc's target attribute), the prefetch of a block's streams (C:
__builtin_prefetch) and the lane loops whose running sums must stay in vector registers (C: gcc
keeps them there by itself). No C twin; tests/test_twins.py lists each with its reason.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

from .. import LANES, PROD_LANES

# Every kernel function: without the GIL, and with NumPy's error model (a division by zero gives inf
# or NaN, as in C, with no check in the loop); cached (JIT) unless it is compiled inside its caller
# (an overload's implementation: KERNEL).
KERNEL = dict(nogil=True, error_model="numpy")
JIT = dict(KERNEL, cache=True)
# The math and the element formulas are inlined in Numba's IR: LLVM's inliner leaves a big
# callee (two logarithms) as a call in the loop, which stops vectorisation.
INLINE = dict(JIT, inline="always")


def _bitcast(from_type, to_type, to_ir):
    """An intrinsic that reinterprets the bits of a from_type value as a to_type value."""
    @intrinsic
    def cast(typingctx, value):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], to_ir)
        return to_type(from_type), codegen
    return cast


bits_f32 = _bitcast(types.float32, types.int32, ir.IntType(32))
from_bits_f32 = _bitcast(types.int32, types.float32, ir.FloatType())
bits_f64 = _bitcast(types.float64, types.int64, ir.IntType(64))
from_bits_f64 = _bitcast(types.int64, types.float64, ir.DoubleType())


@intrinsic
def fma(typingctx, a, b, c):
    """a·b + c rounded once (llvm.fma: the FMA instruction on CPUs that have one)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, a, a), codegen


@intrinsic
def prefer_wide_vectors(typingctx):
    """Marks the function that calls it "prefer-vector-width"="512" for LLVM: its loops then
    vectorise at the full AVX-512 width, where LLVM's tuning for many Intel CPUs prefers 256-bit
    vectors (a preference only: on a CPU without AVX-512 the widest legal vectors are used). Per
    function, as gcc's target attribute in kernels/c/dispatch.h: the process's other Numba code
    keeps Numba's settings (NUMBA_CPU_FEATURES would change them all). Every kernel function with a
    loop calls it first."""
    def codegen(context, builder, signature, args):
        # an LLVM string attribute: llvmlite's AttributeSet.add accepts only its known names
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()
    return types.none(), codegen


def _is_c_array(a, dtype=None):
    return (isinstance(a, types.Array) and a.layout == "C" and isinstance(a.dtype, types.Float)
            and (dtype is None or a.dtype == dtype))


def _is_stream_pairs(t):
    """Whether t is a tuple of (C-contiguous array, boolean) pairs (prefetch_block)."""
    return isinstance(t, types.BaseTuple) and all(
        isinstance(pair, types.BaseTuple) and len(pair) == 2 and isinstance(pair[0], types.Array)
        and pair[0].layout == "C" and isinstance(pair[1], types.Boolean) for pair in t)


@intrinsic
def prefetch_block(typingctx, start, n, reads, writes):
    """Prefetch elements [start, start + n) of each array of the (array, on) pairs in `reads` (for
    reading) and `writes` (for writing) whose `on` is true: the next block's inputs and gradient
    output (llvm.prefetch over their cache lines; C: fb_prefetch_block). An intrinsic, so that its
    code is in the caller: as a function it cost a call passing seven arrays twice per block."""
    if not (isinstance(start, types.Integer) and isinstance(n, types.Integer)
            and _is_stream_pairs(reads) and _is_stream_pairs(writes)):
        return None

    def codegen(context, builder, signature, args):
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)  # (address, read or write, keep in all cache levels, data)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr] + [i32] * 3),
            "llvm.prefetch.p0")
        first = context.cast(builder, args[0], signature.args[0], types.intp)
        count = context.cast(builder, args[1], signature.args[1], types.intp)
        for k, for_write in ((2, False), (3, True)):
            for pair_type, pair in zip(signature.args[k], cgutils.unpack_tuple(builder, args[k])):
                array_type = pair_type[0]
                array, on = cgutils.unpack_tuple(builder, pair)
                with builder.if_then(context.cast(builder, on, pair_type[1], types.boolean)):
                    data = context.make_array(array_type)(context, builder, array).data
                    base = builder.bitcast(builder.gep(data, [first]), byte_ptr)
                    size = builder.mul(count, cgutils.intp_t(array_type.dtype.bitwidth // 8))
                    with cgutils.for_range_slice(builder, cgutils.intp_t(0), size,
                                                 cgutils.intp_t(64)) as (off, _):
                        builder.call(fn, [builder.gep(base, [off]), i32(int(for_write)), i32(3),
                                          i32(1)])
        return context.get_dummy_value()
    return types.none(start, n, reads, writes), codegen


def _lane_vectors(context, builder, signature, args, lanes):
    """Codegen helpers of the lane intrinsics: pointer to `lanes` elements of array argument i
    from element g on, and their load as float64; with `count`, only the first `count` lanes are
    read (a masked load), the others set to `fill`."""
    def lanes_at(i, g):
        dtype = signature.args[i].dtype
        data = context.make_array(signature.args[i])(context, builder, args[i]).data
        vector = ir.VectorType(context.get_value_type(dtype), lanes)
        return builder.bitcast(builder.gep(data, [g]), vector.as_pointer())

    def load(i, g, count=None, fill=0.0):
        pointer = lanes_at(i, g)
        vector = pointer.type.pointee
        align = ir.IntType(32)(signature.args[i].dtype.bitwidth // 8)
        if count is None:
            v = builder.load(pointer, align=align.constant)
        else:
            index = ir.VectorType(cgutils.intp_t, lanes)
            splat = builder.shuffle_vector(
                builder.insert_element(ir.Constant(index, ir.Undefined), count, ir.IntType(32)(0)),
                ir.Constant(index, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                              [0] * lanes))
            mask = builder.icmp_unsigned("<", ir.Constant(index, list(range(lanes))), splat)
            name = f"llvm.masked.load.v{lanes}f{signature.args[i].dtype.bitwidth}.p0"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                vector, [vector.as_pointer(), align.type, mask.type, vector]), name)
            v = builder.call(fn, [pointer, align, mask, ir.Constant(vector, [fill] * lanes)])
        if signature.args[i].dtype == types.float64:
            return v
        return builder.fpext(v, ir.VectorType(ir.DoubleType(), lanes))
    return lanes_at, load


def _lane_groups(context, builder, signature, args, start, lanes, body):
    """The loop of the lane intrinsics: body(g, count) for the groups of `lanes` elements from
    element args[start] on, args[start + 1] elements, count None for a whole group; the last,
    shorter group (count lanes) masked (_lane_vectors)."""
    first = context.cast(builder, args[start], signature.args[start], types.intp)
    n = context.cast(builder, args[start + 1], signature.args[start + 1], types.intp)
    rest = builder.urem(n, cgutils.intp_t(lanes))
    stop = builder.add(first, builder.sub(n, rest))
    with cgutils.for_range_slice(builder, first, stop, cgutils.intp_t(lanes)) as (g, _):
        body(g, None)
    with builder.if_then(builder.icmp_unsigned("!=", rest, cgutils.intp_t(0))):
        body(stop, rest)


@intrinsic
def add_lanes(typingctx, acc_l, l, acc_w, w, start, n):
    """acc_l[k] += float64(l[start + g + k]) (times w[start + g + k], and acc_w[k] += w[start + g
    + k], with weights) for g in range(0, n, LANES) and k < min(LANES, n - g); acc_w and w None:
    no weights. An offset, not a view of l: a view taken per row cost a reference count taken and
    dropped (two calls into NRT) per row; the last group masked, as whole vectors: a scalar loop
    over it left the sums to be read back as a vector from narrower stores, which the CPU cannot
    forward (the lanes not read add 0, which leaves any sum as it is: a sum is never -0).
    C's lane loop with the sums in LLVM vectors (registers): written in Numba, they go through
    memory at every step (LLVM cannot tell the sums from l), several times slower."""
    weighted = w is not types.none
    if not (_is_c_array(acc_l, types.float64) and _is_c_array(l) and isinstance(n, types.Integer)
            and isinstance(start, types.Integer)
            and (not weighted or (_is_c_array(acc_w, types.float64)
                                  and _is_c_array(w, types.float64)))):
        return None

    def codegen(context, builder, signature, args):
        lanes_at, load = _lane_vectors(context, builder, signature, args, LANES)
        zero = cgutils.intp_t(0)
        # (accumulator argument, its running sums: an alloca promoted to registers by LLVM)
        lanes = ir.VectorType(ir.DoubleType(), LANES)
        sums = [(i, cgutils.alloca_once(builder, lanes)) for i in ((0, 2) if weighted else (0,))]
        for i, acc in sums:
            builder.store(load(i, zero), acc)

        def add(g, count):
            v = load(1, g, count)
            if weighted:
                wv = load(3, g, count)
                v = builder.fmul(v, wv)
                builder.store(builder.fadd(builder.load(sums[1][1]), wv), sums[1][1])
            builder.store(builder.fadd(builder.load(sums[0][1]), v), sums[0][1])
        _lane_groups(context, builder, signature, args, 4, LANES, add)
        for i, acc in sums:
            builder.store(builder.load(acc), lanes_at(i, zero), align=8)
        return context.get_dummy_value()
    return types.none(acc_l, l, acc_w, w, start, n), codegen


@intrinsic
def multiply_lanes(typingctx, m, q, start, n):
    """m[k] *= q[start + g + k] for g in range(0, n, PROD_LANES) and k < min(PROD_LANES, n - g):
    the lane products of the product path kept in registers (as add_lanes; the lanes not read
    multiply by 1)."""
    if not (_is_c_array(m, types.float64) and _is_c_array(q, types.float64)
            and isinstance(start, types.Integer) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        lanes_at, load = _lane_vectors(context, builder, signature, args, PROD_LANES)
        zero = cgutils.intp_t(0)
        prod = cgutils.alloca_once(builder, ir.VectorType(ir.DoubleType(), PROD_LANES))
        builder.store(load(0, zero), prod)

        def multiply(g, count):
            builder.store(builder.fmul(builder.load(prod), load(1, g, count, 1.0)), prod)
        _lane_groups(context, builder, signature, args, 2, PROD_LANES, multiply)
        builder.store(builder.load(prod), lanes_at(0, zero), align=8)
        return context.get_dummy_value()
    return types.none(m, q, start, n), codegen
