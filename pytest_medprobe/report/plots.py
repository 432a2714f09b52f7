"""The probe-curve plot: stages on x, balanced accuracy with its interval band on y.

Drawn with matplotlib (no display needed) into SVG bytes that the HTML report embeds as
base64 data URLs and shows at the page's full width, so labels stay readable and a
report is one self-contained file that works offline.
Decoder layers show two lines: the image view (at image tokens) and the answer view
(at the answer position); the model's own answer is the last point.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Literal

from pytest_medprobe import stages

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pytest_medprobe.curve import ProbeCurve

FAIL_COLOUR = "#d62728"
ImageFormat = Literal["svg", "png"]


def _image_bytes(figure: Figure, image_format: ImageFormat) -> bytes:
    """The figure as SVG (default: it scales to any width with sharp labels) or PNG.

    Both are byte-stable for equal inputs: no date or software stamp, and SVG element
    ids from a fixed salt rather than a random one.
    """
    import matplotlib

    buffer = io.BytesIO()
    if image_format == "svg":
        with matplotlib.rc_context({"svg.hashsalt": "pytest-medprobe", "svg.fonttype": "path"}):
            figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    else:
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


IMAGE_VIEW_COLOUR = "#1f77b4"
ANSWER_VIEW_COLOUR = "#ff7f0e"
SIDE_CONNECTOR_COLOUR = "#9467bd"


def _x_positions(curve: ProbeCurve) -> tuple[dict[str, float], list[str]]:
    """x of every stage; image and answer views of layer j share the same x."""
    x: dict[str, float] = {}
    labels: list[str] = []
    for name in [*curve.vision_blocks, stages.VISION, stages.CONNECTOR, *curve.side_connectors]:
        x[name] = float(len(labels))
        labels.append(name)
    for name in curve.answer_view:
        index = stages.parse_stage(name).index
        position = float(len(labels))
        x[name] = position
        x[stages.llm_layer(index, "image")] = position  # type: ignore[arg-type]
        labels.append(f"llm.{index}")
    x[stages.ANSWER] = float(len(labels))
    labels.append(stages.ANSWER)
    return x, labels


def plot_probe_curve(
    curve: ProbeCurve,
    title: str,
    marked: tuple[str, str] | None = None,
    failed: bool = False,
    image_format: ImageFormat = "svg",
) -> bytes:
    """SVG (or PNG) bytes of the curve; ``marked`` stages are shaded (red when ``failed``).

    One matplotlib figure drawn top to bottom (bands, line, marks, axes, legend); kept in
    one piece so the order of the drawing calls is the order of the layers.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    x, labels = _x_positions(curve)
    figure = Figure(figsize=(max(6.0, 0.28 * len(labels) + 2.5), 3.6), dpi=100)
    axes = figure.add_subplot()

    def draw(names: list[str], colour: str, label: str, style: str = "-") -> None:
        names = [name for name in names if name in x]
        if not names:
            return
        xs = [x[name] for name in names]
        scores = [curve.score(name) for name in names]
        lows = [curve.interval(name)[0] for name in names]
        highs = [curve.interval(name)[1] for name in names]
        axes.fill_between(xs, lows, highs, color=colour, alpha=0.18, linewidth=0)
        axes.plot(xs, scores, style, color=colour, marker="o", markersize=3, label=label)

    encoder = [*curve.vision_blocks, stages.VISION, stages.CONNECTOR]
    if curve.has_image_view:
        draw(encoder + list(curve.image_view), IMAGE_VIEW_COLOUR, "probe, image tokens")
        draw(list(curve.answer_view), ANSWER_VIEW_COLOUR, "probe, answer position", "--")
    else:
        draw(encoder, IMAGE_VIEW_COLOUR, "probe, vision")
        draw(list(curve.answer_view), ANSWER_VIEW_COLOUR, "probe, answer position", "--")
    # Side connectors (Qwen3-VL's deepstack) feed the decoder in parallel: points, no line.
    draw(list(curve.side_connectors), SIDE_CONNECTOR_COLOUR, "probe, side connectors", "")
    answer = curve.answer
    axes.errorbar(
        [x[stages.ANSWER]],
        [answer.score],
        yerr=[[answer.score - answer.low], [answer.high - answer.score]],
        fmt="D",
        color="black",
        capsize=3,
        label="model's answer",
    )
    axes.axhline(curve.chance, color="grey", linestyle=":", linewidth=1, label="chance")
    axes.axhline(curve.pixels.score, color="#2ca02c", linestyle="-.", linewidth=1, label="raw pixels")
    if marked is not None:
        marked_x = [x[name] for name in marked if name in x]
        if marked_x:
            low, high = min(marked_x) - 0.4, max(marked_x) + 0.4
            axes.axvspan(low, high, color=FAIL_COLOUR if failed else "#7f7f7f", alpha=0.15, linewidth=0)
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    axes.set_ylim(0.0, 1.02)
    axes.set_ylabel("balanced accuracy")
    axes.set_title(title, fontsize=9)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=7, loc="lower left", ncol=3)
    figure.tight_layout()
    return _image_bytes(figure, image_format)


def normalized_depth(curve: ProbeCurve) -> dict[str, float]:
    """Each stage's place on a 0-1 depth axis, so models of different depth line up.

    Vision blocks fill [0, 0.3], the handed-off feature sits at 0.3, the connector at
    0.35, and decoder layer j at 0.4 + 0.6 (j + 1) / L for both of its views.
    """
    depth: dict[str, float] = {}
    blocks = curve.vision_blocks
    for index, name in enumerate(blocks):
        depth[name] = 0.3 * (index + 1) / len(blocks)
    depth[stages.VISION] = 0.3
    depth[stages.CONNECTOR] = 0.35
    for name in curve.side_connectors:
        depth[name] = 0.35
    n_layers = len(curve.answer_view)
    for name in [*curve.image_view, *curve.answer_view]:
        layer = stages.parse_stage(name).index or 0
        depth[name] = 0.4 + 0.6 * (layer + 1) / n_layers
    return depth


def plot_overlay(curves: list[tuple[str, ProbeCurve]], title: str, image_format: ImageFormat = "svg") -> bytes:
    """SVG (or PNG) bytes: the probe curves of several models on one dataset, on the normalized depth axis."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.8), dpi=100)
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["tab10"]
    for index, (label, curve) in enumerate(curves):
        colour = colours(index % 10)
        depth = normalized_depth(curve)
        encoder = [*curve.vision_blocks, stages.VISION, stages.CONNECTOR]
        main = encoder + list(curve.image_view) if curve.has_image_view else encoder
        axes.plot([depth[s] for s in main], [curve.score(s) for s in main], "-", color=colour, label=label)
        answer_view = list(curve.answer_view)
        axes.plot([depth[s] for s in answer_view], [curve.score(s) for s in answer_view], "--", color=colour)
        axes.plot([1.1], [curve.answer.score], "D", color=colour)
    if curves:
        axes.axhline(curves[0][1].chance, color="grey", linestyle=":", linewidth=1, label="chance")
    axes.set_xticks([0.15, 0.35, 0.7, 1.1])
    axes.set_xticklabels(["vision blocks", "connector", "decoder layers (0-100%)", "answer"], fontsize=7)
    for boundary in (0.325, 0.375, 1.05):
        axes.axvline(boundary, color="grey", linewidth=0.5, alpha=0.5)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("normalized depth (solid: image tokens, dashed: answer position, ◆: answer)", fontsize=8)
    axes.set_ylabel("balanced accuracy")
    axes.set_title(title, fontsize=9)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    return _image_bytes(figure, image_format)
