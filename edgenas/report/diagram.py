"""The chosen architecture drawn as a stage diagram: stem -> one box per layer -> head.

A string such as ``r16_i1_stem16|mb_k3_e6_c24_s2_w8a8|skip_c24_s1_w8a8|...`` is exact but hard to
read; boxes grouped by stage (a shaded band per stage of the space), coloured by block family,
with the kernel, expansion, width, stride and bit widths written in, show at a glance where the
search spent depth and where it chose to skip. Skipped layers stay in the picture as dashed
boxes: a skip is a decision, and DARTS's collapse toward skips is something to notice.
"""

from __future__ import annotations

import re

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

FAMILIES = {  # op-name prefix -> (readable name, colour)
    "mbh": ("MBConv h-swish", "#9467bd"),
    "mb": ("MBConv", "#1f77b4"),
    "fmb": ("Fused-MBConv", "#2ca02c"),
    "dw": ("DW-separable", "#17becf"),
    "rb": ("Res-bottleneck", "#8c564b"),
    "skip": ("skip", "#bbbbbb"),
    "zero": ("zero", "#bbbbbb"),
}
_TOKEN = re.compile(r"^(?P<fam>[a-z]+)(?P<rest>(?:_[a-z]+\d+)*)$")
PER_ROW = 7


def op_parts(op: str) -> tuple[str, str, list[str]]:
    """``mb_k5_e6_sp50`` -> ("MBConv", colour, ["k5 e6", "sparse 50%"]); unknown ops keep their name."""
    m = _TOKEN.match(op)
    if not m or m["fam"] not in FAMILIES:
        return op, "#e377c2", []
    name, color = FAMILIES[m["fam"]]
    toks = [t for t in m["rest"].split("_") if t]
    sparse = [f"sparse {t[2:]}%" for t in toks if t.startswith("sp")]
    shape = " ".join(t for t in toks if not t.startswith("sp"))
    return name, color, [s for s in (shape, *sparse) if s]


def _box(ax, x, y, w, h, color, lines, dashed=False):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color if not dashed else "white", ec="#333333" if not dashed else "#999999",
                                ls="--" if dashed else "-", lw=1.2, alpha=0.9 if not dashed else 1.0))
    ax.text(x + w / 2, y + h / 2, "\n".join(lines), ha="center", va="center", fontsize=8,
            color="white" if not dashed and color not in ("#bbbbbb",) else "#444444")


def arch_diagram(arch, stage_of_layer: list[int] | None = None) -> Figure | None:
    if arch is None:
        return None
    nodes = [("stem", "#555555", ["stem conv3x3", f"{arch.in_channels}→{arch.stem}", f"{arch.image_size}x{arch.image_size}"], False, None)]
    hw = arch.image_size
    for i, layer in enumerate(arch.layers):
        name, color, extra = op_parts(layer.op)
        hw_out = (hw + layer.stride - 1) // layer.stride
        skip = layer.op in ("skip", "zero")
        lines = [f"L{i} {name}", *extra, f"c{layer.cout} s{layer.stride}" + (f" → {hw_out}x{hw_out}" if layer.stride > 1 else "")]
        if not skip:
            lines.append(f"w{layer.w_bits}a{layer.a_bits}")
        stage = stage_of_layer[i] if stage_of_layer and i < len(stage_of_layer) else None
        nodes.append((name, color, lines, skip, stage))
        hw = hw_out
    nodes.append(("head", "#555555", [f"head 1x1 → {arch.head}", "avg pool", f"FC → {arch.num_classes}"], False, None))

    per_row = min(PER_ROW, len(nodes))
    rows = -(-len(nodes) // per_row)
    w, h, gap, row_h = 1.6, 1.15, 0.45, 1.9
    fig = Figure(figsize=(per_row * (w + gap) * 0.8 + 0.3, (rows * row_h - (row_h - h) + 0.75) * 0.8 + 0.5), layout="constrained")
    ax = fig.subplots()
    pos = []
    for k, (_, color, lines, dashed, _) in enumerate(nodes):
        r, c = divmod(k, per_row)
        x, y = c * (w + gap), -r * row_h
        pos.append((x, y))
        _box(ax, x, y, w, h, color, lines, dashed)
    for k, (_, _, _, _, stage) in enumerate(nodes):  # one shaded band per stage of the space, per row
        if stage is None or (k > 0 and nodes[k - 1][4] == stage and k % per_row):
            continue
        end = k
        while end + 1 < len(nodes) and nodes[end + 1][4] == stage and (end + 1) % per_row:
            end += 1
        (x0, y0), (x1, _) = pos[k], pos[end]
        ax.add_patch(Rectangle((x0 - 0.15, y0 - 0.22), x1 - x0 + w + 0.3, h + 0.5, fc="#f2f2f2", ec="#cccccc", zorder=-1))
        ax.text(x0 - 0.1, y0 + h + 0.1, f"stage {stage + 1}", fontsize=7, color="#666666")
    for k in range(len(nodes) - 1):
        (x0, y0), (x1, y1) = pos[k], pos[k + 1]
        if y0 == y1:
            a, b = (x0 + w, y0 + h / 2), (x1, y1 + h / 2)
        else:  # wrap to the next row: down, back left, down into the first box
            ymid = y0 - (row_h - h) / 2
            ax.plot([x0 + w / 2, x0 + w / 2, x1 + w / 2], [y0, ymid, ymid], color="#555555", lw=1)
            a, b = (x1 + w / 2, ymid), (x1 + w / 2, y1 + h)
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, color="#555555"))
    ax.set_xlim(-0.3, per_row * (w + gap) - gap + 0.3)
    ax.set_ylim(-(rows - 1) * row_h - 0.3, h + 0.45)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"Chosen architecture ({arch.depth} active layers of {len(arch.layers)})", fontsize=10)
    return fig
