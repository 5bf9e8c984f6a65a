"""The book's figures: architecture, training curves, confusion matrix and galleries of faces.

Every function returns a matplotlib Figure that pyplot no longer tracks, so a notebook can `glue`
it without it also being shown at the end of the cell.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from fer_utils.data import CLASSES

# Layer types that start a new block in the architecture figure; the layers after one join its block.
BLOCK_STARTS = ("InputLayer", "Conv2D", "Flatten", "Dense")
BLOCK_COLOURS = {"InputLayer": "#e8e8e8", "Conv2D": "#cfe2f3", "Flatten": "#fff2cc", "Dense": "#f4cccc"}
TRAIN_STYLE = {"color": "#1f77b4", "marker": "o", "markersize": 3, "label": "train"}
VAL_STYLE = {"color": "#d62728", "marker": "s", "markersize": 3, "label": "validation"}


def _figure(*args, **kwargs) -> tuple[Figure, object]:
    """plt.subplots, with the figure detached from pyplot so that only `glue` or `display` shows it."""
    fig, axes = plt.subplots(*args, **kwargs)
    plt.close(fig)
    return fig, axes


def layer_blocks(table: pd.DataFrame) -> list[pd.DataFrame]:
    """Split a `models.layer_table` into blocks: each starts at an input, conv, flatten or dense layer."""
    starts = [i for i, kind in enumerate(table["type"]) if kind in BLOCK_STARTS]
    bounds = [*starts, len(table)]
    return [table.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def architecture_figure(table: pd.DataFrame) -> Figure:
    """A block diagram drawn from `models.layer_table`: one row per block, its output size as a log-scaled bar."""
    blocks = layer_blocks(table)
    fig, ax = _figure(figsize=(8.6, 0.58 * len(blocks) + 0.45))  # axis units are inches
    sizes = [int(np.prod([int(s) for s in block["output shape"].iloc[-1].split("×")])) for block in blocks]
    scale = 1.1 / np.log10(max(sizes))
    for row, (block, size) in enumerate(zip(blocks, sizes)):
        y = 0.58 * (len(blocks) - 1 - row)
        first = block.iloc[0]
        ops = " → ".join(_short(kind, details) for kind, details in zip(block["type"], block["details"]))
        ax.add_patch(FancyBboxPatch((0, y + 0.07), 5.1, 0.44, boxstyle="round,pad=0.01,rounding_size=0.06",
                                    facecolor=BLOCK_COLOURS.get(first["type"], "white"), edgecolor="#555"))
        ax.text(0.08, y + 0.29, first["layer"], va="center", fontsize=9.5, fontweight="bold")
        ax.text(1.12, y + 0.29, ops, va="center", fontsize=9)
        ax.add_patch(Rectangle((5.25, y + 0.17), scale * np.log10(max(size, 1.5)), 0.24, facecolor="#8c8c8c"))
        shape = block["output shape"].iloc[-1]
        out = f"{shape} = {size:,}" if "×" in shape else f"{size:,}"
        ax.text(6.45, y + 0.29, f"{out} values\n{int(block['params'].sum()):,} parameters", va="center",
                fontsize=8.5)
        if row:
            ax.annotate("", (0.45, y + 0.51), (0.45, y + 0.65), arrowprops={"arrowstyle": "->", "color": "#555"})
    ax.text(5.25, 0.58 * len(blocks), "output values per image\n(bar: log scale)", fontsize=8, color="#555",
            va="bottom")
    ax.set_xlim(-0.05, 8.55)
    ax.set_ylim(-0.02, 0.58 * len(blocks) + 0.4)
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    return fig


def _short(kind: str, details: str) -> str:
    """A compact label for one layer in the diagram: 'conv 3×3, 32', 'BN', 'relu', 'dropout 0.25'."""
    names = {"InputLayer": "input", "BatchNormalization": "BN", "Activation": "", "MaxPooling2D": "max-pool",
             "Dropout": "dropout", "Conv2D": "conv", "Dense": "dense", "Flatten": "flatten"}
    details = details.replace(" filters, same", "").replace("rate ", "").replace(" units", "")
    return " ".join(part for part in (names.get(kind, kind), details) if part)


def history_figure(history: pd.DataFrame, best_epoch: int | None = None, reference: dict | None = None) -> Figure:
    """Loss and accuracy per epoch, train against validation; a dotted line marks `best_epoch`, and dashed lines
    the final values of a `reference` run (keys loss, accuracy, val_loss, val_accuracy), such as the original
    report's."""
    fig, axes = _figure(1, 2, figsize=(10, 3.8))
    for ax, metric, title in zip(axes, ("loss", "accuracy"), ("cross-entropy loss", "accuracy")):
        ax.plot(history.index, history[metric], **TRAIN_STYLE)
        ax.plot(history.index, history[f"val_{metric}"], **VAL_STYLE)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="#555", linestyle=":", linewidth=1, label=f"best validation ({best_epoch})")
        if reference is not None:
            for key, style, who in ((metric, TRAIN_STYLE, "train"), (f"val_{metric}", VAL_STYLE, "validation")):
                ax.axhline(reference[key], color=style["color"], linestyle="--", linewidth=1, alpha=0.6,
                           label=f"original report, final {who}")
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(normalized: pd.DataFrame, floor: float = 1e-3) -> Figure:
    """Heatmap of a row-normalised confusion matrix with log-scaled colour; empty cells stay blank."""
    fig, ax = _figure(figsize=(7, 5.8))
    values = normalized.to_numpy(dtype=float)
    labels = np.where(values > 0, np.char.mod("%.0f%%", 100 * values), "")
    labels = np.where((values > 0) & (values < 0.005), "<1%", labels)
    sns.heatmap(np.where(values > 0, np.maximum(values, floor), np.nan), ax=ax, cmap="Blues",
                norm=LogNorm(vmin=floor, vmax=1), annot=labels, fmt="", square=True, linewidths=0.5,
                linecolor="white", xticklabels=normalized.columns, yticklabels=normalized.index,
                cbar_kws={"label": "share of the true class (log scale)"})
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.tick_params(axis="x", rotation=30)
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


def confident_mistakes(y: np.ndarray, probs: np.ndarray, k: int = 12) -> np.ndarray:
    """Indices of the k wrong predictions made with the highest confidence, most confident first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y)
    confidence = probs[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:k]]


def gallery_figure(images: np.ndarray, titles: list[str], ncols: int = 6) -> Figure:
    """48x48 grey images in a grid, each with a title."""
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = _figure(nrows, ncols, figsize=(1.6 * ncols, 1.95 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def mistakes_figure(x: np.ndarray, y: np.ndarray, probs: np.ndarray, k: int = 12, ncols: int = 6) -> Figure:
    """The k most confident misclassifications: true class, predicted class and its probability."""
    chosen = confident_mistakes(y, probs, k)
    predicted = probs.argmax(axis=1)
    titles = [f"true {CLASSES[y[i]]}\npred {CLASSES[predicted[i]]} ({probs[i, predicted[i]]:.2f})" for i in chosen]
    return gallery_figure(x[chosen], titles, ncols)


def class_examples_figure(x: np.ndarray, y: np.ndarray, per_class: int = 4, seed: int = 0) -> Figure:
    """`per_class` randomly drawn (seeded) images of each class, one column per class."""
    rng = np.random.default_rng(seed)
    fig, axes = _figure(per_class, len(CLASSES), figsize=(1.35 * len(CLASSES), 1.4 * per_class), squeeze=False)
    for c, name in enumerate(CLASSES):
        members = np.flatnonzero(y == c)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        axes[0, c].set_title(name, fontsize=9)
        for r in range(per_class):
            axes[r, c].axis("off")
            if r < len(chosen):
                axes[r, c].imshow(x[chosen[r]], cmap="gray", vmin=0, vmax=255)
    fig.tight_layout()
    return fig


def recipes_figure(histories: dict[str, pd.DataFrame], reference: float | None = None) -> Figure:
    """Validation accuracy per epoch of several recipes; a dashed line marks a `reference` accuracy."""
    fig, ax = _figure(figsize=(7, 3.8))
    for name, history in histories.items():
        ax.plot(history.index, history["val_accuracy"], marker="o", markersize=3, label=name)
    if reference is not None:
        ax.axhline(reference, color="#555", linestyle="--", linewidth=1, label=f"original report ({reference:.3f})")
    ax.set(xlabel="epoch", ylabel="validation accuracy")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


# --- explanation figures ---

MAP_CMAP = "magma"  # a saliency map on its own
OVERLAY_CMAP = "jet"  # a map laid over the face
OVERLAY_FLOOR = 0.15  # overlay values below this stay transparent, so the face shows through
REGION_COLOURS = {"brows": "#1f77b4", "eyes": "#2ca02c", "nose": "#ff7f0e", "mouth": "#d62728", "forehead": "#9467bd"}


def regions_figure(mean_face: np.ndarray, regions: dict, face_box: tuple) -> Figure:
    """The mean face with the fixed face regions drawn as boxes; outside the dashed box is the border."""
    fig, ax = _figure(figsize=(3.6, 3.6))
    ax.imshow(mean_face, cmap="gray")
    for name, (top, bottom, left, right) in regions.items():
        colour = REGION_COLOURS.get(name, "white")
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, lw=2, ec=colour))
        ax.text(right - 0.5, top, name, color=colour, fontsize=8, ha="right", va="top", weight="bold")
    top, bottom, left, right = face_box
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                           fill=False, lw=1.5, ls="--", ec="white"))
    ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def _overlay(ax, image: np.ndarray, heat: np.ndarray) -> None:
    """A grey image with a [0, 1] map laid over it, transparent where the map is low."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.imshow(np.ma.masked_less(heat, OVERLAY_FLOOR), cmap=OVERLAY_CMAP, vmin=0, vmax=1, alpha=0.5)


def saliency_grid(images: np.ndarray, labels: list[str], panels: dict[str, tuple[np.ndarray, bool]],
                  per_row: int = 2, positions: list[int] | None = None) -> Figure:
    """Each example as image | one column per panel, `per_row` examples a row; panels map a title to (maps, overlay).

    `positions` puts example i in slot positions[i] (row-major), leaving gaps where an example is missing.
    """
    width = 1 + len(panels)
    positions = list(range(len(images))) if positions is None else list(positions)
    nrows = max(1, int(np.ceil((max(positions, default=0) + 1) / per_row)))
    fig, axes = _figure(nrows, width * per_row, figsize=(1.15 * width * per_row, 1.35 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, label) in enumerate(zip(images, labels)):
        row, first = divmod(positions[i], per_row)
        cells = axes[row, first * width:(first + 1) * width]
        cells[0].imshow(image, cmap="gray", vmin=0, vmax=255)
        cells[0].set_title(label, fontsize=7, loc="left")
        for ax, (title, (maps, overlay)) in zip(cells[1:], panels.items()):
            if overlay:
                _overlay(ax, image, maps[i])
            else:
                ax.imshow(maps[i], cmap=MAP_CMAP, vmin=0, vmax=1)
    for first in range(per_row):  # column headers above the first row, clear of the examples' labels
        for j, title in enumerate(panels, start=1):
            axes[0, first * width + j].text(0.5, 1.25, title, transform=axes[0, first * width + j].transAxes,
                                            ha="center", va="bottom", fontsize=7, weight="bold")
    fig.tight_layout(pad=0.3, h_pad=0.6, w_pad=0.2)
    return fig


def region_share_figure(enrichment: pd.DataFrame) -> Figure:
    """Heatmaps of saliency mass per region relative to the region's area, rows = class, one panel per model.

    `enrichment` is long-form with columns model, class, region, value.
    """
    models = list(dict.fromkeys(enrichment["model"]))
    fig, axes = _figure(1, len(models), figsize=(4.6 * len(models), 3.4), squeeze=False, sharey=True)
    vmax = float(enrichment["value"].max())
    for ax, model in zip(axes[0], models):
        table = enrichment[enrichment["model"] == model].pivot(index="class", columns="region", values="value")
        table = table.loc[[c for c in CLASSES if c in table.index], list(dict.fromkeys(enrichment["region"]))]
        sns.heatmap(table, ax=ax, annot=True, fmt=".1f", cmap="RdBu_r", center=1.0, vmin=0, vmax=max(vmax, 2.0),
                    cbar=ax is axes[0, -1], cbar_kws={"label": "mass share / area share"}, annot_kws={"fontsize": 7})
        ax.set(title=model, xlabel="", ylabel="true class" if ax is axes[0, 0] else "")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def feature_maps_figure(images: np.ndarray, maps: np.ndarray, labels: list[str], ncols: int = 8) -> Figure:
    """For each image: the image, then every filter's feature map (same colour scale across one image)."""
    n, channels = len(images), maps.shape[-1]
    rows = int(np.ceil(channels / ncols))
    fig = plt.figure(figsize=(0.9 * (ncols + rows), 0.95 * rows * n))
    plt.close(fig)
    for sub, image, fmap, label in zip(np.atleast_1d(fig.subfigures(n, 1)), images, maps, labels):
        grid = sub.add_gridspec(rows, ncols + rows, left=0.01, right=0.99, bottom=0.02, top=0.93,
                                wspace=0.08, hspace=0.25)
        ax = sub.add_subplot(grid[:, :rows])
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
        top = float(fmap.max()) or 1.0
        for c in range(channels):
            ax = sub.add_subplot(grid[c // ncols, rows + c % ncols])
            ax.imshow(fmap[..., c], cmap="viridis", vmin=0, vmax=top)
            ax.set_title(str(c), fontsize=6, pad=1)
            ax.axis("off")
    return fig


def filter_images_figure(images: np.ndarray, titles: list[str], ncols: int = 8) -> Figure:
    """Float images, each stretched to its own range, in a grid with titles (activation maximisation)."""
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = _figure(nrows, ncols, figsize=(1.2 * ncols, 1.4 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray", vmin=float(image.min()), vmax=float(image.max()))
        ax.set_title(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    return fig


def top_images_figure(x: np.ndarray, top: np.ndarray, maps: np.ndarray, titles: list[str], ncols: int = 8) -> Figure:
    """Per filter, its four top-activating images as a 2x2 mosaic, its maps laid over them; maps: (C, k, 48, 48)."""
    nrows = int(np.ceil(len(top) / ncols))
    fig, axes = _figure(nrows, ncols, figsize=(1.45 * ncols, 1.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for f, (ax, title) in enumerate(zip(axes.flat, titles)):
        faces = x[top[f, :4]].reshape(2, 2, *x.shape[1:]).transpose(0, 2, 1, 3).reshape(2 * x.shape[1], -1)
        heat = maps[f, :4].reshape(2, 2, *maps.shape[2:]).transpose(0, 2, 1, 3).reshape(2 * maps.shape[2], -1)
        _overlay(ax, faces, heat)
        ax.set_title(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    return fig


def embedding_figure(points: np.ndarray, labels: np.ndarray, title: str = "") -> Figure:
    """A 2-D map of feature vectors, one colour per class."""
    fig, ax = _figure(figsize=(6, 5))
    names = pd.Categorical([CLASSES[c] for c in labels], categories=CLASSES)
    sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=names, palette="tab10", s=12, linewidth=0, ax=ax)
    ax.set(xticks=[], yticks=[], title=title)
    ax.legend(title="true class", fontsize=8, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


# --- chapter 6 ---

# Batch normalisation's forward graph: node -> (x, y) position, and each edge with the local partial derivative
# that the backward pass multiplies along it (mathtext).
BN_NODES = {"x": (0.0, 1.0), "mu": (2.2, 1.9), "var": (3.0, 3.4), "xhat": (6.0, 1.0), "y": (7.8, 1.0),
            "loss": (9.6, 1.0), "gamma": (7.8, 2.5), "beta": (7.8, -0.5)}
BN_LABELS = {"x": r"$x_i$", "mu": r"$\mu_B$", "var": r"$\sigma_B^2$", "xhat": r"$\hat{x}_i$", "y": r"$y_i$",
             "loss": r"$\ell$", "gamma": r"$\gamma$", "beta": r"$\beta$"}
BN_EDGES = (
    ("x", "mu", r"$\frac{1}{m}$"),
    ("x", "var", r"$\frac{2(x_i-\mu_B)}{m}$"),
    ("mu", "var", r"$-\frac{2}{m}\sum_j (x_j-\mu_B)$"),
    ("x", "xhat", r"$\frac{1}{\sqrt{\sigma_B^2+\epsilon}}$"),
    ("mu", "xhat", r"$-\frac{1}{\sqrt{\sigma_B^2+\epsilon}}$"),
    ("var", "xhat", r"$-\frac{x_i-\mu_B}{2(\sigma_B^2+\epsilon)^{3/2}}$"),
    ("xhat", "y", r"$\gamma$"),
    ("gamma", "y", r"$\hat{x}_i$"),
    ("beta", "y", r"$1$"),
    ("y", "loss", r"$g_i$"),
)


def batchnorm_graph_figure() -> Figure:
    """Batch normalisation's computational graph: the forward nodes, and on each edge the local partial derivative
    of the head with respect to the tail, which the backward pass multiplies along that edge."""
    from matplotlib.patches import Circle, FancyArrowPatch

    fig, ax = _figure(figsize=(10, 4.6))
    radius = 0.32
    for name, (x, y) in BN_NODES.items():
        weight = name in ("gamma", "beta")
        ax.add_patch(Circle((x, y), radius, facecolor="#f4cccc" if weight else "#cfe2f3", edgecolor="#555"))
        ax.text(x, y, BN_LABELS[name], ha="center", va="center", fontsize=13)
    offsets = {("x", "mu"): (-0.15, 0.12), ("x", "var"): (-0.75, 0.1), ("mu", "var"): (1.3, -0.25),
               ("x", "xhat"): (0, -0.55), ("mu", "xhat"): (0.35, -0.05), ("var", "xhat"): (1.2, 0.15),
               ("gamma", "y"): (0.3, -0.2), ("beta", "y"): (0.2, -0.2)}
    for tail, head, label in BN_EDGES:
        (x0, y0), (x1, y1) = BN_NODES[tail], BN_NODES[head]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=14, color="#555",
                                     shrinkA=radius * 72 / 1.6, shrinkB=radius * 72 / 1.6, linewidth=1.2))
        dx, dy = offsets.get((tail, head), (0, 0.18))
        ax.text((x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy, label, ha="center", va="bottom", fontsize=11,
                color="#1f4e79")
    ax.set_xlim(-0.5, 10.1)
    ax.set_ylim(-1.0, 3.9)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    return fig
