"""The quality chapter's figures: duplicate pairs at the threshold, degenerate images, reliability diagrams.

Every function returns a matplotlib Figure that pyplot no longer tracks, so a notebook can `glue` it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fer_utils import plots
from fer_utils.data import CLASSES
from fer_utils.quality import SPLIT_NAMES, Audit

STAGE_STYLE = {"before": {"color": "#d62728", "marker": "o"}, "after": {"color": "#1f77b4", "marker": "s"}}


def _figure(*args, **kwargs) -> tuple[Figure, object]:
    """plt.subplots, with the figure detached from pyplot so that only `glue` or `display` shows it."""
    fig, axes = plt.subplots(*args, **kwargs)
    plt.close(fig)
    return fig, axes


def _show(ax, image: np.ndarray, title: str) -> None:
    """One 48x48 grey image on `ax`, on the full 0-255 scale, in a thin frame (a white image stays visible)."""
    ax.axis("on")
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set(xticks=[], yticks=[])
    for spine in ax.spines.values():
        spine.set_color("#999")
    ax.set_title(title, fontsize=7.5)


def pair_label(split: str, label: int) -> str:
    """'training, happy': where an image of a pair comes from and its label."""
    return f"{SPLIT_NAMES[split]}, {CLASSES[label]}"


def pairs_figure(images: np.ndarray, labels: np.ndarray, split: np.ndarray, examples: pd.DataFrame,
                 per_row: int = 4) -> Figure:
    """Pairs side by side, one row per side of the threshold ('inside' first), titled with distance, split, label."""
    sides = [s for s in ("inside", "outside") if (examples["side"] == s).any()] or ["inside"]
    fig, axes = _figure(len(sides), 2 * per_row, figsize=(1.45 * 2 * per_row, 2.0 * len(sides)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, side in enumerate(sides):
        chosen = examples[examples["side"] == side].head(per_row)
        for k, (i, j, distance) in enumerate(chosen[["i", "j", "distance"]].itertuples(index=False)):
            _show(axes[row, 2 * k], images[i], f"{distance} bits {'≤' if side == 'inside' else '>'} threshold\n"
                                               f"{pair_label(split[i], labels[i])}")
            _show(axes[row, 2 * k + 1], images[j], f"\n{pair_label(split[j], labels[j])}")
    fig.tight_layout(w_pad=0.3)
    return fig


def reliability_figure(curves: dict[str, dict[str, pd.DataFrame]]) -> Figure:
    """Per run, accuracy against mean confidence in each bin before and after temperature scaling (marker area
    growing with the bin's images), over the number of images per bin before scaling."""
    fig, axes = _figure(2, len(curves), figsize=(4.2 * len(curves), 5.2), squeeze=False,
                        gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    for col, (run, stages) in enumerate(curves.items()):
        top, bottom = axes[0, col], axes[1, col]
        top.plot([0, 1], [0, 1], ls="--", color="#888", lw=1, label="perfect calibration")
        for stage, table in stages.items():
            shown = table[table["images"] > 0]
            style = STAGE_STYLE.get(stage, {})
            top.plot(shown["confidence"], shown["accuracy"], lw=1.1, color=style.get("color"),
                     label=f"{stage} temperature scaling")
            top.scatter(shown["confidence"], shown["accuracy"], s=8 + 120 * shown["images"] / shown["images"].max(),
                        zorder=3, **style)
        first = next(iter(stages.values()))
        bottom.bar((first["lower"] + first["upper"]) / 2, first["images"], width=first["upper"] - first["lower"],
                   color="#bbb", edgecolor="white")
        top.set(title=f"{run} recipe", ylabel="accuracy in the bin", xlim=(0, 1), ylim=(0, 1))
        bottom.set(xlabel="top-class confidence", ylabel="images")
        top.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    return fig


def degenerate_figure(result: Audit, ncols: int = 10, limit: int = 60) -> Figure:
    """The images the blank and flatness rules flag (blank first, then flattest first), with split and label."""
    flags = result.flags[result.flags["kind"] != ""].sort_values(["kind", "flat_share"], ascending=[True, False])
    chosen = flags.index.to_numpy()[:limit]
    titles = [f"{'blank' if result.flags.at[i, 'kind'] == 'blank' else 'flat'}\n"
              f"{pair_label(result.split[i], result.labels[i])}" for i in chosen]
    return plots.gallery_figure(result.images[chosen], titles, max(1, min(ncols, len(chosen))))
