"""What every chapter does first, and the numbers each chapter's prose quotes.

A chapter's first code cell is `ch = chapter.start(report=("report", "report"))`: it keeps TensorFlow's start-up
chatter out of the page, loads the book's data and the runs the chapter shows (`book.book_run`), and glues what
the chapters share: the data's name, the evaluation split, the seed, the device, and `run_notes`, the stand-in
warning (when the data is synthetic) followed by `book.provenance` of every run shown. A chapter shows them with

    ```{glue:md} run_notes
    :format: myst
    ```

The `*_facts` functions compute, per chapter, the values its prose quotes, as {glue key: value} dicts for
`Chapter.glue`; the words that change with those values come from `fer_utils.prose`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: keep its start-up chatter out

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fer_utils import book, original, prose
from fer_utils.data import CLASSES, IMAGE_SIZE, FerData

STAND_IN = (":::{warning}\nThis chapter ran on the synthetic stand-in of procedurally drawn faces, not on FER2013: "
            "its numbers describe the stand-in. The {doc}`introduction <intro>` says how to build the book on the "
            "real data.\n:::")
INTRO_STAND_IN = """:::{{admonition}} This build used the synthetic stand-in, not FER2013
:class: warning
No FER2013 file was found, so every number and figure in this book comes from {n:,} procedurally drawn faces
made by `fer_utils.synthetic`. The pipeline is the real one; the results are not FER2013's, and the training
budgets are the stand-in's short ones.

**To build the real report**, put the Kaggle `fer2013.csv` (or `fer2013.csv.gz`, the course's `train.csv`, or
the Kaggle image folder) into `data/`, or point the `FER_DATA` environment variable at it, and run
`jb build book/` again. `data/README.md` lists the forms that are recognised.
:::"""
INTRO_REAL = """:::{{admonition}} This build used FER2013
:class: note
Read from `{path}` ({source}). {notes}
:::"""
STAND_IN_NOTE = ("**Warning: the synthetic stand-in.** This page ran on procedurally drawn faces, not on FER2013, "
                 "so its numbers describe the stand-in; the [introduction](intro.ipynb) says how to build it on the "
                 "real data.")
SPLIT_WORDS = {"test": "test", "val": "validation"}
EXAMPLES_PER_CLASS = 4  # training images per class in the introduction's figure
REPORT = ("report", book.RECIPE)  # the report CNN as chapters 2 to 5 show it: start(report=REPORT)


@dataclass
class Chapter:
    """A chapter's data and runs, and a way to glue values for its prose."""

    data: FerData
    runs: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """The book's seed."""
        return book.seed()

    @property
    def split(self) -> str:
        """The split chapters 3 to 5 score and explain: test when the data has one, else validation."""
        return self.data.held_out

    @property
    def x(self) -> np.ndarray:
        """The images of the evaluation split."""
        return self.data.x[self.split]

    @property
    def y(self) -> np.ndarray:
        """The labels of the evaluation split."""
        return self.data.y[self.split]

    def glue(self, values: dict | None = None, **more) -> None:
        """Glue every value for the prose (see `glue`)."""
        glue(values, **more)

    def table(self, frame: pd.DataFrame, caption: str, name: str, **formats) -> None:
        """Show `frame` as a numbered table (see `table`)."""
        table(frame, caption, name, **formats)


def glue(values: dict | None = None, **more) -> None:
    """Glue every value for the prose, without displaying it; MyST to be parsed goes in as IPython's Markdown."""
    from myst_nb import glue as myst_glue

    for key, value in {**(values or {}), **more}.items():
        myst_glue(key, value, display=False)


def table(frame: pd.DataFrame, caption: str, name: str, **formats) -> None:
    """Show `frame` as a numbered MyST table (`plots.table_markdown`) that {numref}`name` can cite."""
    from IPython.display import Markdown, display

    from fer_utils import plots

    display(Markdown(plots.table_markdown(frame, caption, name, **formats)))


def data_name(data: FerData) -> str:
    """'the synthetic stand-in' or 'FER2013 (its source format)'."""
    return "the synthetic stand-in" if data.is_synthetic else f"FER2013 ({data.source})"


def start(**runs: tuple[str, str]) -> Chapter:
    """Load the data and the named runs ({label: (model, recipe)}) and glue what every chapter shares."""
    from IPython.display import Markdown

    from fer_utils import training

    data = book.book_data(verbose=False)
    ch = Chapter(data, {label: book.book_run(data, model, recipe) for label, (model, recipe) in runs.items()})
    notes = ([STAND_IN] if data.is_synthetic else []) + [
        f"**{model.capitalize()} CNN, {recipe} recipe.** {book.provenance(ch.runs[label])}"
        for label, (model, recipe) in runs.items()]
    ch.glue(data_name=data_name(data), split=SPLIT_WORDS[ch.split], n_eval=int(len(ch.y)), seed=ch.seed,
            device=training.device_name(), run_notes=Markdown("\n\n".join(notes)))
    return ch


# --- what every chapter shares (the notebooks compose the rest in their own cells) ------------------------------


def load(**runs: tuple[str, str]) -> tuple[FerData, dict]:
    """The book's data and the named runs ({label: (model, recipe)}): shipped, cached, or trained now."""
    data = book.book_data(verbose=False)
    return data, {label: book.book_run(data, model, recipe) for label, (model, recipe) in runs.items()}


def notes(data: FerData, runs: dict):
    """Where the page's data and runs come from, as Markdown that JupyterLab and the book render alike."""
    from IPython.display import Markdown

    lines = [STAND_IN_NOTE] if data.is_synthetic else []
    lines += [f"**{run.meta['model'].capitalize()} CNN, {book._recipe_name(run.meta['config'])} recipe.** "
              f"{book.provenance(run)}" for run in runs.values()]
    return Markdown("\n\n".join(f"> {line}" for line in lines))


def glue_values(**values) -> pd.DataFrame:
    """Glue each value for the prose, hidden, and return them as a table that JupyterLab shows."""
    from myst_nb import glue as myst_glue

    for key, value in values.items():
        myst_glue(key, value, display=False)
    return pd.DataFrame({"value": {key: getattr(value, "data", value) for key, value in values.items()}})


def glue_table(name: str, frame: pd.DataFrame, index: bool = True, **formats) -> pd.DataFrame:
    """Glue `frame` as a Markdown table for the page's `{table}` directive (tabulate `formats`); return it."""
    from IPython.display import Markdown
    from myst_nb import glue as myst_glue

    myst_glue(name, Markdown(frame.astype(object).to_markdown(index=index, **formats)), display=False)
    return frame


def notice(data: FerData) -> str:
    """The introduction's note on the data: how to build on FER2013 when it is the stand-in, else where it came from."""
    if data.is_synthetic:
        return INTRO_STAND_IN.format(n=sum(len(y) for y in data.y.values()))
    return INTRO_REAL.format(path=data.path, source=data.source, notes=" ".join(data.notes))


def intro_facts(data: FerData) -> dict:
    """The introduction's numbers: the data's size, source and balance, and how the book's report CNN is trained."""
    import tensorflow as tf
    from IPython.display import Markdown

    from fer_utils import plots

    counts = data.counts()
    train = counts.drop("total")["train"]
    config = book.book_config(data, "report", book.RECIPE)
    return {
        "n_images": int(counts.loc["total"].sum()), "n_classes": len(CLASSES), "class_list": prose.join(CLASSES),
        "input_side": IMAGE_SIZE,
        **{f"n_{s}": int(counts.loc["total", s]) for s in ("train", "val", "test")},
        "data_source": data.source, "data_where": data.path or "generated in memory by fer_utils.synthetic",
        "fingerprint": data.fingerprint, "tf_version": tf.__version__, "recipe": book.RECIPE,
        "epochs": int(config.epochs), "rarest": train.idxmin(), "rarest_share": float(train.min() / train.sum()),
        "commonest": train.idxmax(), "commonest_share": float(train.max() / train.sum()),
        "notice": Markdown(notice(data)), "examples_per_class": EXAMPLES_PER_CLASS,
        "fig-examples": plots.class_examples_figure(data.x["train"], data.y["train"], EXAMPLES_PER_CLASS, book.seed()),
    }


# --- chapter 1 ---------------------------------------------------------------------------------------------------


def model_facts(model, table: pd.DataFrame) -> dict:
    """Chapter 1's numbers, read off `models.layer_table(model)`."""
    from fer_utils import models, training

    total, trainable = int(table["params"].sum()), int(table["trainable"].sum())
    if total != model.count_params():
        raise AssertionError("the layer table must account for every parameter")
    conv = table[table["type"] == "Conv2D"].set_index("layer")
    filters = [int(d.split(", ")[1].split()[0]) for d in conv["details"]]
    pools = table.loc[table["type"] == "MaxPooling2D", "output shape"]
    flatten = table.index[table["type"] == "Flatten"][0]
    dense = table["type"].eq("Dense") | table["layer"].str.startswith("dense")
    biggest = table.loc[table["params"].idxmax()]
    side = conv["details"].map(lambda d: int(d.split("×")[0]))
    big = side.idxmax()
    return {
        "total": total, "trainable": trainable, "non_trainable": total - trainable, "n_layers": len(table),
        "n_conv": len(conv), "n_dense": int((table["type"] == "Dense").sum()), "n_classes": len(CLASSES),
        "input_shape": table["output shape"].iloc[0], "flat": table.loc[flatten, "output shape"],
        "last_map": table.loc[flatten - 1, "output shape"],
        "filters": " → ".join(map(str, filters)), "sides": prose.join(s.split("×")[0] for s in pools),
        "big_kernel_layer": big, "big_kernel": conv.loc[big, "details"].split(",")[0],
        "big_kernel_share": float(conv.loc[big, "params"] / conv["params"].sum()),
        "first_conv": conv.index[0], "first_conv_share": float(conv["params"].iloc[0] / conv["params"].sum()),
        "last_conv": conv.index[-1], "last_conv_input": pools.iloc[-2].rsplit("×", 1)[0],
        "dense_share": float(table.loc[dense, "params"].sum() / total),
        "biggest": biggest["layer"], "biggest_params": int(biggest["params"]),
        "biggest_share": float(biggest["params"] / total),
        "learning_rate": float(training.REPORT.learning_rate), "dropout": float(models.DROPOUT),
    }


# --- chapter 2 ---------------------------------------------------------------------------------------------------

FINAL = ("loss", "accuracy", "val_loss", "val_accuracy")


def scored_epoch(run) -> int:
    """The epoch whose weights a run keeps and the book scores: the last (no recipe restores a best epoch)."""
    return int(run.meta["epochs_run"])


def recipe_extras(config: dict) -> str:
    """What a recipe adds to plain Adam on cross-entropy, in words ('nothing' for the report recipe)."""
    from fer_utils import training

    extras = ["standardised inputs" if config["input_norm"] == "per_image" else "",
              f"augmentation ({training.describe_augmentation(config['augmentation'])})" if config["augment"] else "",
              f"label smoothing of {config['label_smoothing']:g}" if config["label_smoothing"] else "",
              "cosine learning-rate decay" if config["schedule"] == "cosine" else "",
              "recalibrated BatchNorm statistics" if config["recalibrate_bn"] else ""]
    return prose.join([e for e in extras if e], empty="nothing")


def history_facts(run, data: FerData) -> dict:
    """Chapter 2's numbers: the run's settings, its last (scored) epoch beside the original report's final one, its
    best epoch, what validation loss did, and what training cost."""
    history, meta, config = run.history, run.meta, run.meta["config"]
    last, lowest = history.iloc[-1], int(history["val_loss"].idxmin())
    best = int(meta["best_epoch"])
    return {
        "n_train": int(len(data.y["train"])), "n_val": int(len(data.y["val"])), "recipe": book.RECIPE,
        "epochs": int(meta["epochs_run"]), "scored_epoch": scored_epoch(run), "batch": int(config["batch_size"]),
        "lr": float(config["learning_rate"]), "extras": recipe_extras(config),
        **{f"final_{k}": float(last[k]) for k in FINAL}, **{f"orig_{k}": original.FINAL_EPOCH[k] for k in FINAL},
        "gap": float(last["accuracy"] - last["val_accuracy"]),
        "orig_gap": original.FINAL_EPOCH["accuracy"] - original.FINAL_EPOCH["val_accuracy"],
        "val_vs_original": prose.compare(float(last["val_accuracy"]), original.FINAL_EPOCH["val_accuracy"]),
        "best_epoch": best, "best_val_accuracy": float(meta["best_val_accuracy"]),
        "best_train_accuracy": float(history.loc[best, "accuracy"]),
        "first_val_accuracy": float(history["val_accuracy"].iloc[0]),
        "lowest_loss_epoch": lowest, "lowest_val_loss": float(history["val_loss"].min()),
        "trend": prose.loss_trend(len(history), lowest, float(last["loss"]), float(history.loc[lowest, "loss"])),
        "chance": float(np.bincount(data.y["val"]).max() / len(data.y["val"])),
        "seconds": float(meta["seconds"]), "minutes": float(meta["seconds"]) / 60,
        "seconds_per_epoch": float(meta["seconds_per_epoch"]), "train_device": meta["device"],
    }


def versus_original(run) -> pd.DataFrame:
    """The run's scored epoch beside the original report's final epoch: loss and accuracy, training and validation."""
    last = run.history.loc[scored_epoch(run), list(FINAL)]
    return pd.DataFrame([last.to_dict(), original.FINAL_EPOCH], index=pd.Index(
        [f"this build, epoch {scored_epoch(run)}", "original report, final epoch"], name="run"))


# --- chapter 3 ---------------------------------------------------------------------------------------------------

N_PAIRS = 3  # the most confused pairs chapter 3 lists


def class_spread(features: np.ndarray, y: np.ndarray) -> pd.Series:
    """Per class, the mean distance of its images' features to the class's mean, relative to the mean over classes."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    spread = pd.Series({c: float(np.linalg.norm(features[y == i] - features[y == i].mean(axis=0), axis=1).mean())
                        for i, c in enumerate(CLASSES) if np.any(y == i)})
    return spread / spread.mean()


def action_table() -> pd.DataFrame:
    """The prototype action units of each expression (fer_utils.prose.ACTION_UNITS), in words."""
    return pd.DataFrame({"action units": [prose.join((f"AU{u} {prose.AU_NAMES[u]}" for u in prose.ACTION_UNITS[c]),
                                                     empty="none (the face at rest)") for c in CLASSES],
                         "regions": [prose.join(prose.action_regions(c), empty="-") for c in CLASSES]},
                        index=pd.Index(CLASSES, name="expression"))


def confusion_facts(ch: Chapter, run) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Chapter 3's numbers and tables: scores of the scored epoch on the evaluation split and on validation (the
    original report's split), the most confused pairs with the action units they share, the classes recognised
    worst beside the original's finding, and how widely each class spreads in the penultimate features."""
    from fer_utils import evaluation, explain, plots

    probs = evaluation.predict(run.model, ch.x)
    ev = evaluation.Evaluation(ch.y, probs.argmax(axis=1))
    val_accuracy = float(evaluation.evaluate(run.model, ch.data.x["val"], ch.data.y["val"]).accuracy)
    per_class, shares, mistaken = ev.per_class, ev.confusion_normalized, ev.mistaken_for()
    train_counts = pd.Series(np.bincount(ch.data.y["train"], minlength=len(CLASSES)), index=CLASSES)
    pairs = ev.most_confused(N_PAIRS)
    pairs = pd.DataFrame({
        "true → predicted": pairs["true"] + " → " + pairs["predicted"],
        "share of true class": pairs["share_of_true"].map("{:.1%}".format),
        "images": [f"{n} of {per_class.loc[t, 'support']}" for n, t in zip(pairs["count"], pairs["true"])],
        "shared action units": [prose.shared_actions(t, p) for t, p in zip(pairs["true"], pairs["predicted"])],
        "predicted class's share of training": [f"{train_counts[p] / train_counts.sum():.0%}"
                                                for p in pairs["predicted"]],
    })
    top = ev.most_confused(1).iloc[0]
    off = [(t, p) for t in CLASSES for p in CLASSES if t != p]
    sharing = np.array([bool(set(prose.ACTION_UNITS[t]) & set(prose.ACTION_UNITS[p])) for t, p in off])
    confused = np.array([shares.loc[t, p] for t, p in off])
    low = per_class["recall"].sort_values(kind="stable").index[:2]
    spread = class_spread(explain.layer_outputs(run.model, ch.x, explain.EMBEDDING_LAYER), ch.y)
    scores = per_class.assign(**{
        "most often mistaken for": [m if shares.loc[c, m] > 0 else "-" for c, m in mistaken.items()],
        "share of class": [f"{shares.loc[c, m]:.1%}" for c, m in mistaken.items()],
        "spread": spread.reindex(CLASSES).map("{:.2f}".format)})
    sink = mistaken.value_counts().idxmax()
    rarest = train_counts.idxmin()
    facts = {
        "scored_epoch": scored_epoch(run), "accuracy": ev.accuracy, "macro_f1": ev.macro_f1,
        "val_accuracy": val_accuracy, "orig_val_accuracy": original.FINAL_EPOCH["val_accuracy"],
        "val_vs_original": prose.compare(val_accuracy, original.FINAL_EPOCH["val_accuracy"]),
        "chance": float(np.bincount(ch.y, minlength=len(CLASSES)).max() / len(ch.y)),
        "top_true": top["true"], "top_predicted": top["predicted"], "top_share": float(top["share_of_true"]),
        "top_shared": prose.shared_actions(top["true"], top["predicted"]),
        "sharing_confusion": float(confused[sharing].mean()), "other_confusion": float(confused[~sharing].mean()),
        "sharing_vs_other": prose.how_often(float(confused[sharing].mean()), float(confused[~sharing].mean()), 0.002),
        "n_sharing": int(sharing.sum()), "n_pairs": len(off),
        **{f"low_{i}": c for i, c in enumerate(low, 1)},
        **{f"low_{i}_recall": float(per_class.loc[c, "recall"]) for i, c in enumerate(low, 1)},
        **{f"low_{i}_as": mistaken[c] for i, c in enumerate(low, 1)},
        **{f"{c}_as_sad": float(shares.loc[c, "sad"]) for c in ("fear", "angry")},
        "finding": prose.original_finding(list(low), mistaken.to_dict()),
        "most_spread": spread.idxmax(), "fear_spread": float(spread["fear"]),
        "fear_spread_rank": prose.rank(int(spread.rank(ascending=False, method="min")["fear"]), "most spread"),
        "sink": sink, "sink_count": int((mistaken == sink).sum()),
        "sink_precision": float(per_class.loc[sink, "precision"]),
        "rarest": rarest, "rarest_share": float(train_counts[rarest] / train_counts.sum()),
        "rarest_recall": float(per_class.loc[rarest, "recall"]),
        "rarest_rank": prose.rank(int(per_class["recall"].rank(method="min")[rarest])),
        "macro_vs_accuracy": prose.compare(ev.macro_f1, ev.accuracy, 0.01),
        "k_mistakes": min(12, int((ev.y_pred != ev.y_true).sum())),
        "fig-confusion": plots.confusion_figure(shares),
        "fig-mistakes": plots.mistakes_figure(ch.x, ch.y, probs, k=min(12, int((ev.y_pred != ev.y_true).sum()))),
    }
    return facts, {"pairs": pairs, "per_class": scores, "actions": action_table()}


# --- chapter 4 ---------------------------------------------------------------------------------------------------

PER_CLASS = 15  # images per class, drawn at random, behind chapter 4's region numbers
MIN_MISTAKES = 3  # mistakes a model needs in chapter 4's sample before its right and wrong maps are compared
PRIMARY = "vanilla"  # chapter 4's region numbers read the plain gradient; SmoothGrad and Grad-CAM++ are compared
MAP_KINDS = {"vanilla": "vanilla", "SmoothGrad": "smooth", "Grad-CAM++": "cam"}


def _parts(frame: pd.DataFrame) -> dict[str, float]:
    """Mean shares of a set of maps on the facial features, eyes and brows, mouth, forehead and border."""
    from fer_utils import explain

    return {"features": float(frame[list(explain.FEATURE_REGIONS)].sum(axis=1).mean()),
            "eyes & brows": float(frame[["eyes", "brows"]].sum(axis=1).mean()), "mouth": float(frame["mouth"].mean()),
            "forehead": float(frame["forehead"].mean()), "border": float(frame["border"].mean())}


def saliency_facts(ch: Chapter) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Chapter 4's maps, figures, numbers and tables for every run of `ch` (labels 'report' and 'simple').

    Examples: per class one image the report CNN gets right and one it gets wrong (drawn with the seed); region
    numbers: the maps of up to PER_CLASS random images per class, as shares of each map's mass per face region."""
    import time

    from fer_utils import evaluation, explain, plots

    began, names = time.perf_counter(), {"report": "report CNN", "simple": "simple CNN"}
    x, y, seed = ch.x, ch.y, ch.seed
    probs = {k: evaluation.predict(run.model, x) for k, run in ch.runs.items()}
    chosen = explain.select_examples(y, probs["report"], seed=seed)
    examples, sample = chosen["index"].to_numpy(), explain.sample_per_class(y, PER_CLASS, seed=seed)
    both, maps, stats, facts = np.concatenate([examples, sample]), {}, {}, {}
    for k, run in ch.runs.items():
        layer = explain.FEATURE_LAYER[run.meta["model"]]
        found = explain.explain_all(run.model, x[both], probs[k].argmax(axis=1)[both], layer, seed=seed)
        for method, m in found.items():
            maps[k, method], stats[k, method] = m[:len(examples)], m[len(examples):]
        facts[f"{k}_accuracy"] = float(np.mean(probs[k].argmax(axis=1) == y))
        facts[f"{k}_epoch"] = scored_epoch(run)
        facts.update({f"{k}_params": int(run.model.count_params()), f"{k}_minutes": run.meta["seconds"] / 60,
                      f"{k}_device": run.meta["device"]})
        facts[f"{k}_cam_size"] = "×".join(map(str, run.model.get_layer(layer).output.shape[1:3]))
        p = probs[k][examples]
        labels = [f"{CLASSES[t]} → {CLASSES[j]} {p[i, j]:.2f} {'✓' if t == j else '✗'}"
                  for i, (t, j) in enumerate(zip(y[examples], p.argmax(axis=1)))]
        panels = {"vanilla": (maps[k, "vanilla"], False), "SmoothGrad": (maps[k, "SmoothGrad"], False),
                  "SmoothGrad\non image": (maps[k, "SmoothGrad"], True),
                  "Grad-CAM++\non image": (maps[k, "Grad-CAM++"], True)}
        positions = [2 * CLASSES.index(t) + (0 if ok else 1) for t, ok in zip(chosen["true"], chosen["correct"])]
        facts[f"fig-saliency-{k}"] = plots.saliency_grid(x[examples], labels, panels, 2, positions)

    areas = explain.region_areas()
    true_class = pd.Categorical([CLASSES[c] for c in y[sample]], categories=CLASSES)
    shares = {key: explain.region_shares(m) for key, m in stats.items()}
    enrichment = {k: shares[k, PRIMARY].groupby(true_class, observed=False).mean() / areas for k in ch.runs}
    overall = {key: _parts(frame) for key, frame in shares.items()}
    area = _parts(pd.DataFrame([areas]))
    for (k, method), parts in overall.items():
        facts.update({f"{k}_{MAP_KINDS[method]}_{p.replace(' & ', '_')}": v for p, v in parts.items()})
    facts.update({f"{p.replace(' & ', '_')}_area": v for p, v in area.items()})
    for k in ch.runs:
        focus = overall[k, PRIMARY]["features"] / area["features"]
        bright = float(np.nanmean(explain.brightness_correlation(stats[k, PRIMARY], x[sample])))
        right = probs[k].argmax(axis=1)[sample] == y[sample]
        features = shares[k, PRIMARY][list(explain.FEATURE_REGIONS)].sum(axis=1).to_numpy()
        facts.update({f"{k}_focus": focus, f"{k}_focus_words": prose.ratio(focus), f"{k}_bright": bright,
                      f"{k}_bright_words": prose.brightness(bright), f"{k}_n_right": int(right.sum()),
                      f"{k}_n_wrong": int((~right).sum()), f"{k}_right_features": float(features[right].mean()),
                      f"{k}_wrong_features": float(features[~right].mean()) if (~right).any() else float("nan"),
                      f"{k}_forehead_words": prose.ratio(overall[k, PRIMARY]["forehead"] / area["forehead"])})
    gaps = [facts[f"{k}_right_features"] - facts[f"{k}_wrong_features"] for k in ch.runs
            if facts[f"{k}_n_wrong"] >= MIN_MISTAKES]
    report = enrichment["report"]
    eye_brow = (report["eyes"] * areas["eyes"] + report["brows"] * areas["brows"]) / areas[["eyes", "brows"]].sum()
    tops = {k: e[list(explain.FEATURE_REGIONS)].idxmax(axis=1) for k, e in enrichment.items()}
    expected = [c for c in CLASSES if prose.action_regions(c)]
    for method, key in (("SmoothGrad", "smooth"), ("Grad-CAM++", "cam")):
        a, b = stats["report", method], stats["simple", method]
        same, other = (float(np.nanmean(explain.map_correlation(a, bb))) for bb in (b, np.roll(b, 1, axis=0)))
        facts.update({f"corr_{key}": same, f"corr_{key}_other": other, f"corr_{key}_words": prose.alike(same, other)})
    facts.update({
        "n_sample": len(sample), "per_class": PER_CLASS, "min_mistakes": MIN_MISTAKES,
        "smooth_samples": explain.SMOOTH_SAMPLES,
        "smooth_noise": explain.SMOOTH_NOISE, "overlay_floor": plots.OVERLAY_FLOOR,
        "mouth_class": report["mouth"].idxmax(), "mouth_class_x": float(report["mouth"].max()),
        "mouth_class_simple_x": float(enrichment["simple"].loc[report["mouth"].idxmax(), "mouth"]),
        "mouth_median_x": float(report["mouth"].median()), "eye_class": eye_brow.idxmax(),
        "eye_class_x": float(eye_brow.max()), "eye_class_mouth_x": float(report.loc[eye_brow.idxmax(), "mouth"]),
        "agree": int((tops["report"] == tops["simple"]).sum()),
        "au_match": int(sum(tops["report"][c] in prose.action_regions(c) for c in expected)),
        "au_classes": len(expected),
        "right_wrong_words": prose.mistakes_and_focus(gaps),
        "smooth_words": prose.border_shift([overall[k, "SmoothGrad"]["border"] - overall[k, "vanilla"]["border"]
                                            for k in ch.runs]),
        "simple_conv": prose.join(map(str, models_simple()[0])), "simple_dense": models_simple()[1],
        "fig-regions": plots.regions_figure(x.astype(float).mean(axis=0),
                                            {**explain.REGIONS, "forehead": explain.FOREHEAD}, explain.FACE_BOX),
        "fig-region-shares": plots.region_share_figure(pd.concat([
            enrichment[k].rename_axis("class").reset_index().melt(id_vars="class", var_name="region")
            .assign(model=names[k]) for k in ch.runs])),
    })
    tables = {
        "methods": pd.DataFrame([{"model": names[k], "map": method, **{p: f"{v:.0%}" for p, v in parts.items()}}
                                 for (k, method), parts in overall.items()]
                                + [{"model": "(uniform map)", "map": "area",
                                    **{p: f"{v:.0%}" for p, v in area.items()}}]),
        "top": pd.DataFrame({names[k]: [f"{tops[k][c]} ({enrichment[k].loc[c, tops[k][c]]:.1f}×)" for c in CLASSES]
                             for k in ch.runs} | {"regions of its action units":
                                                  [prose.join(prose.action_regions(c), empty="-") for c in CLASSES]},
                            index=pd.Index(CLASSES, name="true class")),
    }
    facts["seconds"] = time.perf_counter() - began
    return facts, tables


def models_simple() -> tuple[tuple[int, ...], int]:
    """The simple CNN's convolution filters and dense units: the reading of the assignment's [64, 128, 512]."""
    from fer_utils import models

    return tuple(models.SIMPLE_CONV), int(models.SIMPLE_DENSE)


# --- chapter 5 ---------------------------------------------------------------------------------------------------

TOP_K = 9  # top-activating images per filter
SELECTIVE = 2 / 3  # a filter is class-selective when this share of its top images comes from one class
ALWAYS_ON, RARELY_ON = 0.99, 0.5  # shares of the images a filter fires on: nearly always, rarely
NEIGHBOURS = 5  # explain.neighbour_agreement's k
AM_STEPS, AM_JITTER, AM_TV = 200, 2, 1.0  # activation maximisation: Adam steps, jitter (pixels), total variation
EMBED_PER_CLASS = 150  # images per class in the embedding map


def filter_facts(ch: Chapter, run) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Chapter 5's numbers, figures and table: the last convolution layer's feature maps on two faces and where all
    its maps put their activation, images grown to excite each filter, the faces that excite each filter most, and
    how the classes separate from stage to stage."""
    import time

    from fer_utils import evaluation, explain, plots
    from fer_utils.data import scale

    began, model, x, y, seed = time.perf_counter(), run.model, ch.x, ch.y, ch.seed
    layer, response = explain.FEATURE_LAYER["report"], explain.RESPONSE_LAYER["report"]
    conv = model.get_layer(models_last_conv())
    probs = evaluation.predict(model, x)
    responses = explain.layer_outputs(model, x, layer)  # (N, h, w, C): the feature maps
    n_filters = responses.shape[-1]
    # Two faces: one correctly classified image (chapter 4's rule) of each of the two classes, among those with
    # such an image, whose mean feature maps lie furthest apart.
    chosen = explain.select_examples(y, probs, seed=seed).sort_values("correct", ascending=False, kind="stable")
    candidates = sorted({CLASSES.index(c) for c in chosen.loc[chosen["correct"], "true"]})
    candidates = candidates if len(candidates) >= 2 else sorted({CLASSES.index(c) for c in chosen["true"]})
    means = np.stack([responses[y == c].mean(axis=0).ravel() for c in candidates])
    far = np.unravel_index(np.linalg.norm(means[:, None] - means[None], axis=-1).argmax(), (len(candidates),) * 2)
    pair = [candidates[i] for i in far]
    shown = [int(chosen.loc[chosen["true"] == CLASSES[c], "index"].iloc[0]) for c in pair]
    peaks = responses[shown].max(axis=(1, 2))
    per_map = responses.transpose(0, 3, 1, 2).reshape(-1, *responses.shape[1:3])  # one map per image and filter
    active = per_map.max(axis=(1, 2)) > 0
    blobs = _parts(explain.coarse_region_shares(per_map[active]))
    area = _parts(pd.DataFrame([explain.region_areas()]))

    profile = explain.filter_profile(model, x, y, layer, k=TOP_K)
    top, _ = explain.top_activating(responses, TOP_K)
    top_maps = explain.filter_saliency(model, x[top[:, :4].ravel()], np.repeat(np.arange(n_filters), 4), layer)
    am = explain.activation_maximization(model, response, steps=AM_STEPS, seed=seed, jitter=AM_JITTER,
                                         tv_weight=AM_TV)
    am_response = np.diagonal(explain.layer_outputs(model, am, response).mean(axis=(1, 2)))
    data_response = explain.layer_outputs(model, x, response).mean(axis=(1, 2)).max(axis=0)
    ratio = am_response / np.where(data_response > 0, data_response, np.nan)

    embed_idx = explain.sample_per_class(y, EMBED_PER_CLASS, seed=seed)
    embedding = explain.layer_outputs(model, x[embed_idx], explain.EMBEDDING_LAYER)
    agreement = {"pixels": explain.neighbour_agreement(scale(x[embed_idx]), y[embed_idx], k=NEIGHBOURS),
                 "last_conv": explain.neighbour_agreement(responses[embed_idx], y[embed_idx], k=NEIGHBOURS),
                 "embedding": explain.neighbour_agreement(embedding, y[embed_idx], k=NEIGHBOURS)}
    regions = profile["region"].value_counts()
    selective = profile[profile["top_class_share"] >= SELECTIVE]["top_class"].value_counts()
    groups = dict(list(profile.groupby("top_class")))
    summary = pd.DataFrame({
        c: {"filters": ", ".join(str(f) for f in group.index),
            "main regions": prose.join(f"{r} ({n})" for r, n in group["region"].value_counts().items())}
        for c, group in groups.items()}).T.reindex([c for c in CLASSES if c in groups])
    summary = summary.rename_axis("top class")
    labels = [f"{CLASSES[y[i]]} (p = {probs[i, y[i]]:.2f})" for i in shown]
    titles = [f"{f}: {r['top_class']} {r['top_class_share']:.0%}, {r['region']}" for f, r in profile.iterrows()]
    facts = {
        "last_conv": conv.name, "kernel": "×".join(map(str, conv.kernel_size)),
        "in_channels": int(conv.input.shape[-1]),
        "n_filters": n_filters, "map_size": "×".join(map(str, responses.shape[1:3])),
        "rf": explain.receptive_field(model, layer), "n_split": len(y), "input_side": IMAGE_SIZE,
        "n_dense_hidden": len(models_report_dense()), "embed_units": int(embedding.shape[-1]),
        "class_a": CLASSES[pair[0]], "class_b": CLASSES[pair[1]],
        "active_a": int((peaks[0] > 0).sum()), "active_b": int((peaks[1] > 0).sum()),
        "filters_a": ", ".join(str(f) for f in np.argsort(peaks[1] - peaks[0])[:3]),
        "filters_b": ", ".join(str(f) for f in np.argsort(peaks[0] - peaks[1])[:3]),
        "fmap_features": blobs["features"], "fmap_focus": blobs["features"] / area["features"],
        "fmap_focus_words": prose.ratio(blobs["features"] / area["features"]), "fmap_border": blobs["border"],
        "fmap_eyes_brows": blobs["eyes & brows"], "fmap_mouth": blobs["mouth"],
        "features_area": area["features"], "border_area": area["border"], "active_maps": float(active.mean()),
        "am_steps": AM_STEPS, "am_jitter": AM_JITTER, "am_tv": AM_TV, "am_ratio": float(np.nanmedian(ratio)),
        "am_beaten": int(np.sum(am_response > data_response)), "top_k": TOP_K,
        "region_counts": prose.join(f"{n} on the {r}" for r, n in regions.items()), "top_region": regions.index[0],
        "top_region_count": int(regions.iloc[0]), "n_selective": int(selective.sum()),
        "selective_classes": prose.join(f"{c} ({n})" for c, n in selective.items()),
        "missing_classes": prose.join([c for c in CLASSES if c not in set(profile["top_class"])]),
        "feature_share": float(profile["feature_share"].mean()),
        "always_on": int((profile["active_share"] > ALWAYS_ON).sum()), "always_share": ALWAYS_ON,
        "rarely_on": int((profile["active_share"] < RARELY_ON).sum()), "rarely_share": RARELY_ON,
        "selective_share": SELECTIVE, "neighbours": NEIGHBOURS,
        **{f"knn_{k}": v for k, v in agreement.items()}, "knn_words": prose.rises(list(agreement.values())),
        "n_embed": len(embed_idx),
        "fig-feature-maps": plots.feature_maps_figure(x[shown], responses[shown], labels),
        "fig-am": plots.filter_images_figure(am, [f"{f}: {profile.loc[f, 'top_class']}" for f in range(n_filters)]),
        "fig-top": plots.top_images_figure(x, top, top_maps.reshape(n_filters, 4, *x.shape[1:]), titles),
        "fig-embedding": plots.embedding_figure(explain.embed_2d(embedding, "tsne", seed=seed), y[embed_idx]),
    }
    facts["seconds"] = time.perf_counter() - began
    return facts, {"filters": summary}


def models_last_conv() -> str:
    """The report CNN's last convolution layer."""
    from fer_utils import models

    return models.LAST_CONV["report"]


def models_report_dense() -> tuple[int, ...]:
    """The report CNN's hidden dense layers' units."""
    from fer_utils import models

    return tuple(models.REPORT_DENSE)


# --- chapter 6 ---------------------------------------------------------------------------------------------------


def show_steps(steps) -> None:
    """Display derivation steps: each sentence, then its display maths."""
    from IPython.display import Markdown, display

    display(Markdown("\n\n".join(f"{s.text}\n\n$$\n{s.latex}\n$$" for s in steps)))


def show_checks(*checks) -> None:
    """Display checks as a table: name, verdict, detail."""
    from IPython.display import Markdown, display

    rows = ["| Check | Verdict | Detail |", "|---|---|---|"]
    rows += [f"| {c.name} | {'passed' if c.passed else 'FAILED'} | {c.detail} |" for c in checks]
    display(Markdown("\n".join(rows)))


def conv_grid() -> pd.DataFrame:
    """The grid of convolution settings chapter 6 runs through Keras."""
    from fer_utils import derivations as d

    return pd.DataFrame({"values": {key: ", ".join(map(str, values)) for key, values in d.CONV_GRID.items()}}
                        ).rename_axis("grid parameter")


def math_facts(v) -> dict:
    """Chapter 6's numbers, and its results as inline maths taken from the proved steps (`derivations.verify_all`)."""
    from IPython.display import Markdown

    from fer_utils import derivations as d
    from fer_utils import plots

    bn_grads, bn_update = v.batchnorm_tf
    sm_full, sm_term = v.softmax_tf
    result = {s.latex.split(" = ")[0]: s.latex for s in (*v.batchnorm.steps, *v.softmax.steps)}
    inline = lambda latex: Markdown(f"${latex}$")  # noqa: E731
    return {
        "n_symbolic": len(v.symbolic), "n_numeric": len(v.numeric), "max_diff": v.max_abs_diff, "tol": d.TF_TOL,
        "conv_counting": v.conv_counting.cases, "conv_grid": v.conv_tf.cases,
        "conv_tf_diff": int(v.conv_tf.max_abs_diff), "bn_m": v.m, "bn_total": len(v.batchnorm.checks),
        "bn_general_total": len(v.batchnorm_general.checks), "bn_local_total": len(v.batchnorm_local.checks),
        "bn_tf_cases": bn_grads.cases, "bn_tf_diff": bn_grads.max_abs_diff, "bn_update_cases": bn_update.cases,
        "bn_update_diff": bn_update.max_abs_diff, "classes": v.classes, "sm_tf_cases": sm_full.cases,
        "sm_tf_diff": max(sm_full.max_abs_diff, sm_term.max_abs_diff),
        "conv_shape": inline(v.conv.steps[-1].latex.replace(r"\text{output shape} = ", "")),
        "bn_gamma": inline(result[r"\frac{\partial \ell}{\partial \gamma}"]),
        "bn_beta": inline(result[r"\frac{\partial \ell}{\partial \beta}"]),
        "bn_x": inline(v.batchnorm.steps[-1].latex), "sm_full": inline(v.softmax.steps[3].latex),
        "sm_term": inline(v.softmax.steps[4].latex),
        "fig-bn-graph": plots.batchnorm_graph_figure(),
    }


# --- chapter 7 ---------------------------------------------------------------------------------------------------

RECIPE_SCORES = ("accuracy", "accuracy (flip TTA)", "accuracy (10 views)", "macro-F1", "macro-F1 (10 views)")


def recipe_facts(report, augmented) -> dict:
    """The augmented recipe's settings, for chapter 7's description of it; raises if it changes something the
    description does not cover (the batch, the optimiser) or the report recipe changes anything."""
    from fer_utils import training

    plain = training.RECIPES["report"]
    same = ("batch_size", "learning_rate", "beta_1", "beta_2")
    if any(getattr(report, k) != getattr(augmented, k) for k in same) or any(
            getattr(report, k) != getattr(plain, k) for k in ("augment", "label_smoothing", "schedule",
                                                               "recalibrate_bn", "input_norm")):
        raise AssertionError("chapter 7 describes the augmented recipe as the report recipe's batch and optimiser")
    if not (augmented.input_norm == "per_image" and augmented.augment and augmented.schedule == "cosine"
            and augmented.label_smoothing > 0 and augmented.recalibrate_bn):
        raise AssertionError("chapter 7 describes standardisation, augmentation, cosine decay, label smoothing "
                             "and BatchNorm recalibration; the augmented recipe no longer has them all")
    return {"batch": report.batch_size, "lr": report.learning_rate, "beta_1": report.beta_1, "beta_2": report.beta_2,
            "augmentation": training.describe_augmentation(augmented.augmentation),
            "cosine_floor": training.COSINE_FLOOR, "smoothing": augmented.label_smoothing,
            "recipe_epochs": augmented.epochs, "report_recipe_epochs": report.epochs}


def beyond_facts(ch: Chapter) -> tuple[dict, pd.DataFrame]:
    """Chapter 7's numbers: both recipes (runs 'report' and 'augmented' of `ch`) on the validation split with one
    view and with ten, their curves, the average of the two networks, and what the augmented recipe does to the
    saliency maps of the same faces."""
    from fer_utils import book, evaluation, plots

    runs, x, y = ch.runs, ch.data.x["val"], ch.data.y["val"]
    table = evaluation.compare_runs(runs, x, y)
    plain, augmented = table.loc["report"], table.loc["augmented"]
    orig = original.FINAL_EPOCH["val_accuracy"]
    views = [evaluation.predict(run.model, x, tta=True) for run in runs.values()]
    together = evaluation.ensemble(views, y)
    best = float(table["accuracy (flip TTA)"].max())
    shared = together["all_wrong"] / max(1 - best, 1e-9)
    facts = {
        **recipe_facts(book.book_config(ch.data, "report", "report"), book.book_config(ch.data, "report", "augmented")),
        "n_val": int(len(y)), "orig_val_accuracy": orig, "n_params": int(runs["augmented"].model.count_params()),
        "device_trained": runs["augmented"].meta["device"],
        **{f"{k}_{s}": float(row[c]) for k, row in (("plain", plain), ("augmented", augmented))
           for s, c in (("acc", "accuracy"), ("acc_flip", "accuracy (flip TTA)"), ("acc_10", "accuracy (10 views)"),
                        ("f1", "macro-F1"), ("f1_10", "macro-F1 (10 views)"))},
        **{f"{k}_epochs": int(run.meta["epochs_run"]) for k, run in (("plain", runs["report"]),
                                                                     ("augmented", runs["augmented"]))},
        "gain_one": 100 * float(augmented["accuracy"] - plain["accuracy"]),
        "gain_ten": 100 * float(augmented["accuracy (10 views)"] - plain["accuracy (10 views)"]),
        "vs_original": prose.compare(float(augmented["accuracy"]), orig),
        "vs_original_points": 100 * float(augmented["accuracy"] - orig),
        "agree": 100 * together["agreement"], "all_wrong": 100 * together["all_wrong"],
        "either_right": 100 * (1 - together["all_wrong"]), "shared": 100 * shared,
        "ensemble_acc": together["accuracy"], "ensemble_f1": together["macro_f1"], "best_single": best,
        "ensemble_vs_best": prose.compare(together["accuracy"], best),
        "ensemble_points": 100 * (together["accuracy"] - best),
        "averaging": prose.averaging(together["accuracy"], best, shared),
        "fig-recipes": plots.recipes_figure({r: run.history for r, run in runs.items()}, orig),
    }
    for k, run in (("plain", runs["report"]), ("augmented", runs["augmented"])):
        history = run.history
        facts.update({f"{k}_peak": int(history["val_accuracy"].idxmax()),
                      f"{k}_gap": abs(100 * float(history["accuracy"].iloc[-1] - history["val_accuracy"].iloc[-1])),
                      f"{k}_gap_side": prose.compare(float(history["accuracy"].iloc[-1]),
                                                     float(history["val_accuracy"].iloc[-1]), 0),
                      f"{k}_rising": prose.still_rising(int(history["val_accuracy"].idxmax()), len(history))})
    facts.update(standardisation_facts(ch, x, y))
    shown = (table.drop(columns="device")
             .assign(**{c: table[c].map("{:.3f}".format) for c in RECIPE_SCORES},
                     minutes=table["minutes"].map("{:.0f}".format))
             .rename(columns={"accuracy (flip TTA)": "acc. + flip", "accuracy (10 views)": "acc. 10 views",
                              "macro-F1 (10 views)": "F1 10 views", "best epoch": "best"}))
    return facts, shown


def standardisation_facts(ch: Chapter, x: np.ndarray, y: np.ndarray) -> dict:
    """The report recipe's and the augmented recipe's saliency maps (vanilla gradient of the true class) of the same
    faces: a figure of one face per class that both classify right, and, over a random sample, how alike the two
    maps of a face are, where their mass goes and how far they follow the light."""
    from fer_utils import evaluation, explain, plots

    seed, models = ch.seed, {k: ch.runs[k].model for k in ("report", "augmented")}
    right = np.all([evaluation.predict(m, x).argmax(axis=1) == y for m in models.values()], axis=0)
    rng = np.random.default_rng(seed)
    examples = np.array([rng.choice(np.flatnonzero(right & (y == c))) for c in range(len(CLASSES))
                         if np.any(right & (y == c))], dtype=np.int64)
    sample = explain.sample_per_class(y, PER_CLASS, seed=seed)
    both = np.concatenate([examples, sample])
    maps = {k: explain.saliency(m, x[both], y[both], seed=seed) for k, m in models.items()}
    stats = {k: m[len(examples):] for k, m in maps.items()}
    same = float(np.nanmean(explain.map_correlation(stats["report"], stats["augmented"])))
    other = float(np.nanmean(explain.map_correlation(stats["report"], np.roll(stats["augmented"], 1, axis=0))))
    area = _parts(pd.DataFrame([explain.region_areas()]))
    facts = {"std_corr": same, "std_corr_other": other, "std_words": prose.alike(same, other),
             "std_n_sample": len(sample), "std_features_area": area["features"], "std_forehead_area": area["forehead"]}
    for k in models:
        parts = _parts(explain.region_shares(stats[k]))
        bright = float(np.nanmean(explain.brightness_correlation(stats[k], x[sample])))
        facts.update({f"std_{k}_features": parts["features"], f"std_{k}_forehead": parts["forehead"],
                      f"std_{k}_border": parts["border"], f"std_{k}_bright": bright,
                      f"std_{k}_bright_words": prose.brightness(bright)})
    panels = {"report recipe": (maps["report"][:len(examples)], True),
              "augmented recipe": (maps["augmented"][:len(examples)], True)}
    facts["fig-standardised-saliency"] = plots.saliency_grid(x[examples], [CLASSES[c] for c in y[examples]], panels,
                                                             per_row=3)
    return facts
