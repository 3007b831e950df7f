"""Explicit 16-lane float32 vectors inside numba kernels.

A numba type whose LLVM type is ``<16 x float>``, and the few intrinsics a kernel needs:
load/store of a row slice (``ld2``/``st2``), ``splat``, ``vzero``, ``vadd``/``vsub``/``vmul``
(fast-math), ``vfma`` (one fused multiply-add), ``sadd``/``smul`` (no reassociation: they keep
a dot product a balanced tree instead of the chain LLVM would make), ``vsum`` and ``vsum2``
(horizontal sums as shuffle trees). Locals of this type are SSA values, so LLVM keeps them
in (zmm) registers across loop iterations: a user's vectors never go through memory and no
runtime alias checks are needed. Any LLVM target compiles it (2 ymm per vector on AVX2, 4 xmm
on SSE/NEON), but only AVX-512 has the registers to keep four rows' worth of them, so
:mod:`mfcore.training.implicit` uses these kernels where the CPU has it (benchmarks/NOTES.md,
section 12)."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

W = 16


class F32x16(types.Type):
    def __init__(self):
        super().__init__(name="f32x16")


f32x16 = F32x16()
_VT = ir.VectorType(ir.FloatType(), W)


@register_model(F32x16)
class _Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VT)


def _ptr(context, builder, aryty, ary, idxs):
    arr = context.make_array(aryty)(context, builder, ary)
    p = cgutils.get_item_pointer(context, builder, aryty, arr, idxs, wraparound=False)
    return builder.bitcast(p, _VT.as_pointer())


def _is_f32_array(a, nd):
    return isinstance(a, types.Array) and a.ndim == nd and a.dtype == types.float32


@intrinsic
def ld2(typingctx, arr, r, c):
    """arr[r, c:c+16] as a vector (2-D float32 array)."""
    if not _is_f32_array(arr, 2):
        return None

    def codegen(context, builder, sig, args):
        aryty, rty, cty = sig.args
        r_ = context.cast(builder, args[1], rty, types.intp)
        c_ = context.cast(builder, args[2], cty, types.intp)
        p = _ptr(context, builder, aryty, args[0], [r_, c_])
        return builder.load(p, align=4)

    return f32x16(arr, r, c), codegen


@intrinsic
def st2(typingctx, arr, r, c, v):
    """arr[r, c:c+16] = v."""
    if not _is_f32_array(arr, 2) or v != f32x16:
        return None

    def codegen(context, builder, sig, args):
        aryty, rty, cty, _ = sig.args
        r_ = context.cast(builder, args[1], rty, types.intp)
        c_ = context.cast(builder, args[2], cty, types.intp)
        p = _ptr(context, builder, aryty, args[0], [r_, c_])
        builder.store(args[3], p, align=4)
        return context.get_dummy_value()

    return types.void(arr, r, c, v), codegen


@intrinsic
def splat(typingctx, x):
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        xf = context.cast(builder, args[0], sig.args[0], types.float32)
        v = builder.insert_element(ir.Constant(_VT, ir.Undefined), xf, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(_VT, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), W), [0] * W))

    return f32x16(x), codegen


@intrinsic
def vzero(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_VT, [0.0] * W)

    return f32x16(), codegen


FAST = ("contract", "reassoc", "nsz", "arcp")
"""numba's fast-math flags of the kernels (kernels.FASTMATH) as LLVM instruction flags."""
STRICT = ("contract",)
"""No reassociation: the operations stay in the order written (a balanced tree stays one)."""


def _binop(name: str, prefix: str, flags: tuple[str, ...]):
    """An intrinsic ``prefix + name`` applying LLVM's ``name`` lane-wise with ``flags``."""

    def impl(typingctx, a, b):
        if a != f32x16 or b != f32x16:
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, name)(args[0], args[1], flags=flags)

        return f32x16(a, b), codegen

    impl.__name__ = prefix + name[1:]
    return intrinsic(impl)


vadd = _binop("fadd", "v", FAST)
vsub = _binop("fsub", "v", FAST)
vmul = _binop("fmul", "v", FAST)
sadd = _binop("fadd", "s", STRICT)
smul = _binop("fmul", "s", STRICT)


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c (one fused multiply-add)."""
    if a != f32x16 or b != f32x16 or c != f32x16:
        return None

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VT, [_VT, _VT, _VT]), "llvm.fma.v16f32")
        return builder.call(fn, list(args))

    return f32x16(a, b, c), codegen


@intrinsic
def vsum(typingctx, v):
    """Horizontal sum (a shuffle tree) as float32."""
    if v != f32x16:
        return None

    def codegen(context, builder, sig, args):
        x = args[0]
        n = W
        while n > 1:
            h = n // 2
            lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(ir.IntType(32), h), list(range(h))))
            hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(ir.IntType(32), h), list(range(h, n))))
            x = builder.fadd(lo, hi, flags=FAST)
            n = h
        return builder.extract_element(x, ir.Constant(ir.IntType(32), 0))

    return types.float32(v), codegen


@intrinsic
def vsum2(typingctx, u, v):
    """(sum(u), sum(v)) reduced together: one shuffle tree over both (fewer ops than two)."""
    if u != f32x16 or v != f32x16:
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        # level 1: lanes 0-7 of u+u_hi and v+v_hi packed into one 16-vector
        lo = builder.shuffle_vector(args[0], args[1], ir.Constant(ir.VectorType(i32, 16), list(range(8)) + list(range(16, 24))))
        hi = builder.shuffle_vector(args[0], args[1], ir.Constant(ir.VectorType(i32, 16), list(range(8, 16)) + list(range(24, 32))))
        x = builder.fadd(lo, hi, flags=FAST)  # [u 8 | v 8]
        n = 8
        while n > 1:
            h = n // 2
            idx_lo = list(range(h)) + list(range(n, n + h))
            idx_hi = list(range(h, n)) + list(range(n + h, 2 * n))
            lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, 2 * h), idx_lo))
            hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, 2 * h), idx_hi))
            x = builder.fadd(lo, hi, flags=FAST)
            n = h
        a = builder.extract_element(x, ir.Constant(i32, 0))
        b = builder.extract_element(x, ir.Constant(i32, 1))
        return context.make_tuple(builder, sig.return_type, [a, b])

    return types.UniTuple(types.float32, 2)(u, v), codegen
