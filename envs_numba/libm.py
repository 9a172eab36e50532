"""Direct calls into the C math library from Numba code, with their exact results.

* ``sincos(x)`` -> ``(sin(x), cos(x))`` in one libm call. glibc's ``sincos`` shares its code
  with ``sin`` and ``cos`` and returns the same bits (checked on 2e7 arguments up to 1e6;
  ``tests/test_libm.py`` re-checks against NumPy), at close to the cost of one of them.
* ``pow(x, y)`` / ``powf(x, y)``: libm's ``pow``, which is what NumPy scalar ``x**2`` calls.
  LLVM (and so Numba) rewrites ``pow(x, 2.0)`` to ``x*x``, which differs from glibc's
  ``pow`` in the last bit for about 1 in 1000 arguments; the call is marked ``nobuiltin`` so
  the optimiser leaves it alone.

These are Numba intrinsics: they compile to plain external calls, so functions using them
stay cacheable (``cache=True``), unlike ctypes function pointers.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _declare(builder, fnty, name):
    """Declare libm's ``name``; ``nobuiltin`` keeps LLVM from rewriting calls to it."""
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    fn.attributes.add("nobuiltin")
    return fn


@intrinsic
def sincos(typingctx, x):
    if x != types.float64:
        return None
    sig = types.UniTuple(types.float64, 2)(types.float64)

    def codegen(context, builder, signature, args):
        dbl = ir.DoubleType()
        fnty = ir.FunctionType(ir.VoidType(), [dbl, dbl.as_pointer(), dbl.as_pointer()])
        fn = _declare(builder, fnty, "sincos")
        s_ptr = cgutils.alloca_once(builder, dbl)
        c_ptr = cgutils.alloca_once(builder, dbl)
        builder.call(fn, [args[0], s_ptr, c_ptr])
        return context.make_tuple(builder, signature.return_type, [builder.load(s_ptr), builder.load(c_ptr)])

    return sig, codegen


def _opaque_binary(name: str, nbtype, irtype):
    @intrinsic
    def fn(typingctx, x, y):
        if x != nbtype or y != nbtype:
            return None

        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(irtype, [irtype, irtype])
            return builder.call(_declare(builder, fnty, name), list(args))

        return nbtype(nbtype, nbtype), codegen

    return fn


pow = _opaque_binary("pow", types.float64, ir.DoubleType())  # noqa: A001 (libm's name)
powf = _opaque_binary("powf", types.float32, ir.FloatType())
