"""Default schedules for every CPU kernel, so an untuned (``--trials 0``) library is usable.

Why: TVM's default CPU pipeline schedules nothing, so an untuned kernel is a serial scalar loop
nest; an untuned MobileNetV2-0.35 ran 4-9x slower than onnxruntime's int8 kernels. These rules
are what a MetaSchedule record replaces: the tuning database is applied first
(``pipeline.apply_database``), and only kernels without a record get them. They run as one DLight
rule (``tvm.s_tir.dlight``) that classifies a kernel by its blocks; a schedule that fails leaves
the kernel to DLight's CPU reduction rule (docs/int8_kernels.md, "Default schedules"):

* ``schedule_gemm``: the packed GEMM (``packed_dot.packed_dot_func`` / ``conv_dot_func``), its
  requantize epilogue in the register block;
* ``schedule_depthwise``: ``depthwise.depthwise_func`` (channels-last, channels as lanes);
* ``schedule_other``: pooling and TVM's own kernels with one reduction (``schedule_anchor``),
  everything elementwise or layout-only (``schedule_injective``).
"""

from __future__ import annotations

import functools
import logging
import math

# TVM's ``kMaxStackAlloca``: a buffer allocated inside a kernel is a stack array only when its
# scope is "global" and it is smaller than this; anything else ("local" scope included) becomes a
# ``TVMBackendAllocWorkspace``/``FreeWorkspace`` pair on every iteration of the parallel loop
# around it (docs/int8_kernels.md, "Register block").
STACK_BYTES = 1024

_log = logging.getLogger(__name__)
# Depthwise: one vector of int32 accumulators per output pixel, the pixel loop inside the channel
# loop, so the 3x3 taps' widened weights (9 vectors) and the requantize's per-channel constants
# stay in registers along a row. With 16 ymm registers (AVX2, AVX-VNNI) that holds only for 8
# channels per vector: 16 lanes there reloaded the weights for every pixel. AVX-512's 32 zmm
# registers hold 16 channels' weights, and 16 lanes made whole MobileNetV2 blocks 12-17 % faster
# (docs/int8_kernels.md "Depthwise"). ``DEPTHWISE_LANES`` overrides the choice when set (benches).
DEPTHWISE_LANES: int | None = None
LANES = 32  # elements per vector loop of elementwise blocks (a 256-bit vector of bytes); LLVM splits wider ones


def _blocks(sch):
    return sch.get_child_blocks(sch.get_sblock("root"))


def _name(sch, block) -> str:
    return sch.get(block).name_hint


def _inline_all_but(sch, keep: set[str]) -> None:
    """Inline every block except ``keep`` and the function's output: the epilogue becomes part
    of the one block that writes the result, so no intermediate tensor is written."""
    changed = True
    while changed:
        changed = False
        outputs = {_name(sch, b) for b in sch.get_output_blocks(sch.get_sblock("root"))}
        for block in _blocks(sch):
            name = _name(sch, block)
            if name in keep or name in outputs:
                continue
            try:
                sch.compute_inline(block)
                changed = True
                break
            except Exception:  # noqa: BLE001 - tvm ScheduleError: not inlinable, try the other way
                try:
                    sch.reverse_compute_inline(block)
                    changed = True
                    break
                except Exception:  # noqa: BLE001
                    continue


def _divisor(n: int, candidates) -> int:
    return next((c for c in candidates if n % c == 0), 1)


def _parallel_vectorize(sch, block, lanes: int) -> None:
    """Threads over the fused outer loops, the innermost loop vectorized when whole vectors fit
    (split by ``lanes``) or it is short; a long ragged one is left to LLVM's loop vectorizer
    (a predicated vector loop would be scalarized)."""
    loops = sch.get_loops(block)
    if not loops:
        return
    extent = int(sch.get(loops[-1]).extent)
    if extent % lanes == 0 and extent > lanes:
        _, vec = sch.split(loops[-1], factors=[None, lanes])
        sch.vectorize(vec)
    elif extent <= 64:
        sch.vectorize(loops[-1])
    outer = sch.get_loops(block)[:len(loops) - 1]
    if outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])


def _vectorize_row(sch, loop) -> None:
    """Vectorize a row loop in whole 16- or 8-lane pieces; a ragged long one is left to LLVM.
    One vector op over a whole 56- or 112-wide row was 4-6x slower (register spills)."""
    extent = int(sch.get(loop).extent)
    if extent <= 16:
        sch.vectorize(loop)
        return
    lanes = next((v for v in (16, 8) if extent % v == 0), None)
    if lanes is not None:
        sch.vectorize(sch.split(loop, factors=[None, lanes])[1])


def _extents(sch, loops) -> list[int]:
    return [int(sch.get(lp).extent) for lp in loops]


def _is_reduction(sch, block) -> bool:
    return any(int(iv.iter_type) == 2 for iv in sch.get(block).iter_vars)  # kCommReduce


def _epilogue(sch, keep: set[str], lanes: int) -> None:
    """The output block(s) after inlining: threads over the outer loops, inner loop vectorized."""
    for out in sch.get_output_blocks(sch.get_sblock("root")):
        if _name(sch, out) not in keep:
            _parallel_vectorize(sch, out, lanes)


def schedule_gemm(sch, kernel) -> None:
    """``packed_dot_func``: blocks ``pack_x`` -> ``packed_dot`` -> (inlined epilogue) output.

    The GEMM's register block is ``rb`` pixels x ``ob`` groups of ``kernel.lanes`` output
    channels, accumulated over the input channels (and taps, ``conv_dot_func``) in a stack buffer (registers after LLVM's
    promotion) and tensorized with the target's intrinsic; pixel tiles x channel groups are
    split over threads."""
    gemm = sch.get_sblock("packed_dot")
    inputs = {_name(sch, b) for b in sch.get_producers(gemm)}  # pack_x, or a fused producer: own stages
    _inline_all_but(sch, {"packed_dot"} | inputs)
    gemm = sch.get_sblock("packed_dot")
    kernel = kernel.member(_weight_dtype(sch, gemm))  # the form the rewrite chose for this weight
    loops = sch.get_loops(gemm)
    n_spatial = sum(1 for iv in sch.get(gemm).iter_vars if int(iv.iter_type) == 0)
    *pixels, oo, oi = loops[:n_spatial]
    red, ci = loops[n_spatial:-1], loops[-1]  # (co) for a 1x1 conv / matmul, (rh, rw, co) for k x k
    *outer, px = pixels  # (r) or (b, i, j): tile the innermost (fusing first breaks tensorize's int64 check)
    width, n_oo = _extents(sch, (px, oo))
    input_words = math.prod(_extents(sch, pixels)) * _extents(sch, [red[-1]])[0]  # each pixel's input row, once
    weight_words = n_oo * kernel.lanes * math.prod(_extents(sch, red))
    rb, ob = register_block(width, n_oo, kernel)
    p0, r1 = sch.split(px, factors=[None, rb])
    o0, o1 = sch.split(oo, factors=[None, ob])
    tiles = ([o0, *outer, p0] if weights_outer(weight_words, input_words)
             else [*outer, p0, o0])
    sch.reorder(*tiles, *red, r1, o1, oi, ci)
    co = red[0]
    acc = sch.cache_write(gemm, 0, "global")   # on the stack: smaller than STACK_BYTES (register_block)
    sch.reverse_compute_at(acc, tiles[-1])
    tile = sch.fuse(*tiles)
    sch.parallel(tile)
    _tensorize_register_block(sch, gemm, acc, co, oi, kernel.intrin, unrolled=(r1, o1))
    for name in inputs:
        _parallel_vectorize(sch, sch.get_sblock(name), LANES)
    if not _epilogue_in_register_block(sch, acc):
        _epilogue(sch, {"packed_dot", _name(sch, acc)} | inputs, 16)


def weights_outer(weight_words: int, input_words: int) -> bool:
    """Walk the tiles channel block first (all pixels of one block of output channels, then the
    next) when the weight is larger than the input, else pixel first.

    A tile reads its channel block's whole weight slice (every tap and input word) and its
    pixels' input rows. Pixel first keeps a pixel tile's input in L1 while consecutive tiles sweep
    the weight: right for the large maps and small weights of early layers. On a small map with a
    large weight (ResNet-18's 512-channel 3x3 convs at 3x3, 2.4 MB of weight for 4.6 KB of input)
    that streamed the whole weight from memory once per pixel tile; channel block first reads
    each weight slice once while it is in cache, and splits the weight between the threads
    (docs/int8_kernels.md, "Tile order"). Both counts are in K-byte words."""
    return weight_words > input_words


def _weight_dtype(sch, gemm) -> str:
    """The packed weight's dtype: the GEMM reads uint8 activations, its int32 accumulator and
    the weight (int16 for ``pmaddwd``, int8 for the byte forms)."""
    return next(str(r.source.dtype) for r in sch.get(gemm).reads if str(r.source.dtype) not in ("uint8", "int32"))


def register_block(width: int, n_groups: int, kernel) -> tuple[int, int]:
    """(pixels, channel groups) of the GEMM's register block for a pixel row of ``width`` and
    ``n_groups`` groups of ``kernel.lanes`` output channels.

    The block is the int32 accumulator, so it must fit the vector registers the kernel leaves
    for it (``kernel.accumulators``: 32 zmm on AVX-512, 16 ymm on AVX2, less the operands) and
    stay below ``STACK_BYTES``, or TVM allocates it from the heap on every tile. Three channel
    groups are preferred (each broadcast input word feeds three dot products) where three pixels
    of them fit, then the widest pixel count; 7 pixels before 8 because the 32->16 projection of
    MobileNetV2 at 112x112 ran 4x faster with 7 than with 8 or 4 (measured in
    docs/int8_kernels.md, "Register block")."""
    most = min(kernel.accumulators, (STACK_BYTES - 1) // (kernel.lanes * 4))
    ob = _divisor(n_groups, [c for c in (3, 2) if 3 * c <= most])
    rb = _divisor(width, [r for r in (7, 6, 5, 4, 8, 3, 2) if r * ob <= most])
    return rb, ob


def _epilogue_in_register_block(sch, acc) -> bool:
    """Requantize straight from the register block: the epilogue (the function's one output
    block, inlined chain of requantize ops) moves into the write-back of the accumulator,
    so no int32 tensor is written to memory (docs/int8_kernels.md). False (nothing changed)
    when the kernel has no epilogue or it does not map onto the block's region."""
    outputs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(outputs) != 1 or _name(sch, outputs[0]) == _name(sch, acc):
        return False
    try:
        sch.reverse_compute_inline(outputs[0])
    except Exception:  # noqa: BLE001 - tvm ScheduleError: the epilogue's reads are not the block's writes
        return False
    return True


def _tensorize_register_block(sch, block, acc, reduce_loop, intrin_loop, intrin: str, unrolled) -> None:
    """The common end of both GEMM schedules: the accumulator's init split off at ``reduce_loop``,
    the dot-product intrinsic at ``intrin_loop``, the register block unrolled, and the init and
    write-back of the stack-sized accumulator vectorized."""
    init = sch.decompose_reduction(block, reduce_loop)
    sch.tensorize(intrin_loop, intrin)
    for loop in unrolled:
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(acc)[-1])


def depthwise_lanes(kernel) -> int:
    """Channels per depthwise vector for a target whose packed kernel is ``kernel``: 16 where the
    kernel's vectors are 512-bit (16 int32 lanes: AVX-512 VNNI), else 8 (see ``DEPTHWISE_LANES``)."""
    if DEPTHWISE_LANES is not None:
        return DEPTHWISE_LANES
    return 16 if kernel is not None and kernel.lanes == 16 else 8


def schedule_depthwise(sch, kernel=None) -> None:
    """``depthwise.depthwise_func`` (NHWC, channels as lanes): threads over (output row,
    channel vector) pairs, which balances 7-row maps over 2 threads too; along the row, per
    output pixel, the taps unrolled around one vector multiply-add and the requantize epilogue
    applied to that vector. The padded uint8 input is one threaded, vectorized pass before."""
    _inline_all_but(sch, {"pad_x", "depthwise"})
    dw = sch.get_sblock("depthwise")
    (out,) = sch.get_output_blocks(sch.get_sblock("root"))
    if _name(sch, out) == "depthwise":
        raise ValueError("no epilogue")  # the function always has unpack_y after it
    b, i, j, c = sch.get_loops(out)
    c0, lane = sch.split(c, factors=[None, depthwise_lanes(kernel)])
    sch.reorder(c0, j)
    sch.parallel(sch.fuse(b, i, c0))
    sch.vectorize(lane)
    sch.compute_at(dw, j, preserve_unit_loops=True)
    *_, dlane, rh, rw = sch.get_loops(dw)
    sch.reorder(rh, rw, dlane)
    sch.vectorize(dlane)
    for r in (rh, rw):
        if int(sch.get(r).extent) <= 7:
            sch.unroll(r)
    pad = sch.get_sblock("pad_x")
    *outer, pc = sch.get_loops(pad)
    _, pv = sch.split(pc, factors=[None, 16])
    sch.vectorize(pv)
    sch.parallel(sch.fuse(*outer[:2]))


def schedule_anchor(sch, _kernel=None, per_plane_input: bool = False, vector_row: bool = True) -> None:
    """A kernel with one reduction block (depthwise, a dense k x k conv, pooling) and an
    elementwise epilogue: threads over the output's (batch, channel) planes, each plane's
    reduction computed there with the taps outside the vectorized output row, and the input's
    padding block computed per plane as well, so it stays in cache."""
    reductions = [b for b in _blocks(sch) if _is_reduction(sch, b)]
    if len(reductions) != 1:
        raise ValueError("not a single-reduction kernel")
    anchor = reductions[0]
    anchor_name = _name(sch, anchor)
    producers = {_name(sch, b) for b in sch.get_producers(anchor)}
    _inline_all_but(sch, {anchor_name} | producers)
    outputs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(outputs) != 1:
        raise ValueError("more than one output")
    out = outputs[0]
    out_loops = sch.get_loops(out)
    spatial = [iv for iv in sch.get(anchor).iter_vars if int(iv.iter_type) == 0]
    if _name(sch, out) == anchor_name:  # no epilogue: schedule the reduction block itself
        loops = sch.get_loops(anchor)
        outer = loops[:min(2, len(spatial))]
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
        return
    n_par = min(2, len(out_loops) - 1) if len(out_loops) > 2 else 1
    par = sch.fuse(*out_loops[:n_par]) if n_par > 1 else out_loops[0]
    sch.parallel(par)
    rest = sch.get_loops(out)[1:]
    if rest:
        sch.vectorize(rest[-1]) if int(sch.get(rest[-1]).extent) <= 64 else None
    sch.compute_at(anchor, par, preserve_unit_loops=True)
    for name in producers:
        blk = sch.get_sblock(name)
        if _is_reduction(sch, blk):
            continue
        if not per_plane_input:  # a dense conv reads every input plane: pad once, threaded
            _parallel_vectorize(sch, blk, LANES)
            continue
        try:
            sch.compute_at(blk, par, preserve_unit_loops=True)
            inner = sch.get_loops(blk)[-1]
            if int(sch.get(inner).extent) <= 64:
                sch.vectorize(inner)
        except Exception:  # noqa: BLE001 - a producer that cannot move stays at the root, threaded
            _parallel_vectorize(sch, blk, LANES)
    loops = sch.get_loops(anchor)[1:]  # below the parallel loop: the plane's spatial then reduction loops
    kinds = [int(iv.iter_type) for iv in sch.get(anchor).iter_vars]
    n_red = sum(1 for k in kinds if k == 2)
    plane, red = loops[:len(loops) - n_red], loops[len(loops) - n_red:]
    if not plane or not red:
        return
    lane = plane[-1]
    sch.reorder(*plane[:-1], *red, lane)
    if per_plane_input and vector_row:
        _vectorize_row(sch, lane)  # the init stays in the block (vectorize refuses a decomposed update)
    for r in red:
        if int(sch.get(r).extent) <= 7:
            sch.unroll(r)


def schedule_injective(sch, _kernel=None) -> None:
    """No reduction: everything inlined into the output, threads outside, vector inside."""
    if any(_is_reduction(sch, b) for b in _blocks(sch)):
        raise ValueError("has a reduction")
    _inline_all_but(sch, set())
    for out in sch.get_output_blocks(sch.get_sblock("root")):
        _parallel_vectorize(sch, out, LANES)


def schedule_other(sch, kernel=None) -> None:
    reductions = [b for b in _blocks(sch) if _is_reduction(sch, b)]
    if not reductions:
        return schedule_injective(sch, kernel)
    # pooling reads one input plane per output plane, like a depthwise conv
    return schedule_anchor(sch, kernel, per_plane_input=all("pool" in _name(sch, b) for b in reductions))


def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - tvm ScheduleError: no such block
        return False


def _classify(sch, kernel) -> str:
    if kernel is None and _has_block(sch, "packed_dot"):
        return "other"
    kinds = ("packed_dot", "depthwise")
    return next((kind for kind in kinds if _has_block(sch, kind)), "other")


SCHEDULES = {  # kernel class -> (schedule, kernel) -> None
    "packed_dot": schedule_gemm,
    "depthwise": schedule_depthwise,
    "other": schedule_other,
}


@functools.cache
def _rule_class():
    from tvm import s_tir
    from tvm.s_tir import dlight as dl

    class EdgenasDefault(dl.ScheduleRule):
        """Classify a PrimFunc by its kernel blocks and apply that class's default schedule."""

        def __init__(self, kernel):
            self.kernel = kernel

        def apply(self, func, target, tunable):  # noqa: ARG002 - DLight's signature
            sch = s_tir.Schedule(func)
            fn = SCHEDULES.get(_classify(sch, self.kernel))
            if fn is None:
                return None
            try:
                fn(sch, self.kernel)
            except Exception as e:  # noqa: BLE001 - tvm ScheduleError: leave it to the next rule
                _log.debug("default schedule %s failed: %s", fn.__name__, (str(e).strip().splitlines() or [""])[-1])
                return None
            return sch

    return EdgenasDefault


def rules(kernel) -> list:
    """The DLight rules for a CPU target whose packed kernel is ``kernel`` (``packed_dot.kernel_for``;
    its intrinsics must be registered, ``packed_dot.register``: ``build.build`` does both)."""
    from tvm.s_tir import dlight as dl

    return [_rule_class()(kernel), dl.cpu.Reduction()]


def default_for(func, target, kernel):
    """The schedule an untuned build gives ``func`` (a normalised task PrimFunc): the first of
    ``rules(kernel)`` that applies, as ``tvm.s_tir.dlight.ApplyDefaultSchedule`` picks it, or
    the unscheduled function when none does. Its trace replays that choice, so ``tune`` can
    measure it as the first trial of every task (docs/tuning.md, "The default schedule is a trial")."""
    from tvm import s_tir

    for rule in rules(kernel):
        sch = rule.apply(func, target, False)
        if isinstance(sch, list):
            sch = sch[0] if sch else None
        if sch is not None:
            return sch
    return s_tir.Schedule(func)
