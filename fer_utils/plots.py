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
    fig, ax = _figure(figsize=(10, 0.6 * len(blocks) + 0.5))
    sizes = [int(np.prod([int(s) for s in block["output shape"].iloc[-1].split("×")])) for block in blocks]
    scale = 2.4 / np.log10(max(sizes))
    for row, (block, size) in enumerate(zip(blocks, sizes)):
        y = len(blocks) - 1 - row
        first = block.iloc[0]
        ops = " → ".join(_short(kind, details) for kind, details in zip(block["type"], block["details"]))
        ax.add_patch(FancyBboxPatch((0, y + 0.12), 6.6, 0.76, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=BLOCK_COLOURS.get(first["type"], "white"), edgecolor="#555"))
        ax.text(0.12, y + 0.5, first["layer"], va="center", fontsize=9, fontweight="bold")
        ax.text(1.3, y + 0.5, ops, va="center", fontsize=8.5)
        ax.add_patch(Rectangle((6.9, y + 0.3), scale * np.log10(max(size, 1.5)), 0.4, facecolor="#8c8c8c"))
        shape = block["output shape"].iloc[-1]
        out = f"{shape} = {size:,}" if "×" in shape else f"{size:,}"
        ax.text(9.5, y + 0.5, f"out {out} values\n{int(block['params'].sum()):,} parameters", va="center", fontsize=8.5)
        if row:
            ax.annotate("", (0.6, y + 0.88), (0.6, y + 1.12), arrowprops={"arrowstyle": "->", "color": "#555"})
    ax.text(6.9, len(blocks) - 0.02, "output values per image (log scale)", fontsize=8, color="#555", va="bottom")
    ax.set_xlim(-0.1, 12.6)
    ax.set_ylim(-0.05, len(blocks) + 0.3)
    ax.axis("off")
    fig.tight_layout()
    return fig


def _short(kind: str, details: str) -> str:
    """A compact label for one layer in the diagram: 'conv 3×3, 32', 'BN', 'relu', 'dropout 0.25'."""
    names = {"InputLayer": "input", "BatchNormalization": "BN", "Activation": "", "MaxPooling2D": "max-pool",
             "Dropout": "dropout", "Conv2D": "conv", "Dense": "dense", "Flatten": "flatten"}
    details = details.replace(" filters, same", "").replace("rate ", "").replace(" units", "")
    return " ".join(part for part in (names.get(kind, kind), details) if part)


def history_figure(history: pd.DataFrame, best_epoch: int | None = None) -> Figure:
    """Loss and accuracy per epoch, train against validation; a dotted line marks `best_epoch`."""
    fig, axes = _figure(1, 2, figsize=(10, 3.8))
    for ax, metric, title in zip(axes, ("loss", "accuracy"), ("cross-entropy loss", "accuracy")):
        ax.plot(history.index, history[metric], **TRAIN_STYLE)
        ax.plot(history.index, history[f"val_{metric}"], **VAL_STYLE)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="#555", linestyle=":", linewidth=1, label=f"best epoch ({best_epoch})")
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[1].legend(loc="lower right")
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
