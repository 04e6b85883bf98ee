"""``sentinel fit``: fit a slice estimator on labelled traces, write it and its card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from entropy_sentinel.cli._io import TRACES_HELP, read_traces_cli, report_rejections
from entropy_sentinel.cli.app import console
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.model_names import models_named, record_model

__all__ = ["CHOICES", "card_paths", "fit"]

# The options' values, spelled here so that `sentinel --help` does not import scikit-learn
# (the estimator layer loads when a fit runs; tests/test_cli_help.py checks these lists
# against the library's own).
CHOICES = {
    "preset": ("sentinel", "sentinel-entropy", "paper"),
    "family": ("lr", "rf", "mlp", "hgb"),
    "features": ("profile", "profile10", "sea", "profile+baselines"),
}


def card_paths(model: Path) -> tuple[Path, Path]:
    """Where `fit` writes the Markdown card and the reliability diagram for ``model``."""
    stem = model.with_suffix("") if model.suffix else model
    return stem.with_name(stem.name + ".card.md"), stem.with_name(stem.name + ".reliability.png")


def fit(
    input: Annotated[
        Path,
        typer.Argument(help="Labelled " + TRACES_HELP[0].lower() + TRACES_HELP[1:]),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Artifact to write, e.g. model.skops.")
    ],
    preset: Annotated[
        str,
        typer.Option(
            help=f"Named configuration: {', '.join(CHOICES['preset'])}, or auto: sentinel "
            "for traces with logprobs, sentinel-entropy for precomputed entropies (see "
            "docs/estimator.md). The options below override it."
        ),
    ] = "auto",
    family: Annotated[
        str | None,
        typer.Option(
            help=f"Classifier: {', '.join(CHOICES['family'])}, or auto (chosen by CV AUROC)."
        ),
    ] = None,
    calibration: Annotated[str | None, typer.Option(help="isotonic, sigmoid or none.")] = None,
    balance: Annotated[
        bool | None, typer.Option("--balance/--no-balance", help="Balance the classes.")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help=f"Feature set: {', '.join(CHOICES['features'])}.")
    ] = None,
    blend: Annotated[
        str | None,
        typer.Option(
            help="Blend members METHOD:SCORE, comma-separated (atc or ac on a baseline "
            "score, e.g. atc:max_entropy,ac:nll_avg), or none."
        ),
    ] = None,
    mode: Annotated[str, typer.Option(help="Entropy mode: topk, topk_renorm, topk_tail.")] = "topk",
    cv: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    slice_dim: Annotated[
        str,
        typer.Option(
            help="Slice dimension whose values seen in training get a calibration offset "
            "each (and whose training slices the card lists)."
        ),
    ] = "domain",
    model_name: Annotated[
        str | None,
        typer.Option(
            help="The generating model the traces come from, recorded in the artifact (the "
            "service scores that model's traces with it). Default: the model the training "
            "traces name, if they name one."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    jobs: Annotated[int, typer.Option(help="Parallel fits (-1: all cores).")] = 1,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Fit a slice estimator (calibrated P(correct) per response) on labelled traces.

    Writes OUTPUT (the artifact) and, next to it, the model card NAME.card.md
    and its reliability diagram NAME.reliability.png (NAME: OUTPUT without its
    suffix). Unlabelled traces are counted and not used; rejected records are
    listed.
    """
    from entropy_sentinel.estimator import presets
    from entropy_sentinel.estimator.blend import parse_blend
    from entropy_sentinel.estimator.calibration import check_calibration
    from entropy_sentinel.estimator.card import card_markdown, plot_reliability
    from entropy_sentinel.estimator.features import check_feature_set
    from entropy_sentinel.estimator.grids import check_family
    from entropy_sentinel.steps import check_mode

    if preset != "auto" and preset not in presets.PRESETS:
        raise ConfigError(
            f"--preset {preset!r} is unknown; use auto or one of {list(presets.PRESETS)}"
        )
    params: dict[str, Any] = {}
    if family is not None:
        params["family"] = check_family(family, allow_auto=True)
    if calibration is not None:
        params["calibration"] = (
            None if calibration.lower() == "none" else check_calibration(calibration)
        )
    if balance is not None:
        params["balance"] = balance
    if features is not None:
        params["features"] = check_feature_set(features)
    if blend is not None:
        none = blend.strip().lower() in ("", "none")
        members = () if none else tuple(m.strip() for m in blend.split(","))
        parse_blend(members)  # a malformed member is a ConfigError naming it
        params["blend"] = members
    check_mode(mode)
    if output.is_dir():
        raise ConfigError(f"--output {str(output)!r} is a directory; give a file name")
    batch = read_traces_cli(input, quiet=quiet)
    report_rejections(batch, input, output.with_name(output.name + ".rejected.jsonl"))
    trained = zip(batch.models, batch.has_label.tolist(), strict=True)
    model_name = _model_name(model_name, models_named(m for m, lab in trained if lab))
    if preset == "auto":
        preset = presets.choose_preset(batch.subset(batch.has_label))
        why = (
            "the traces carry logprobs"
            if preset == presets.DEFAULT_PRESET
            else "the traces carry precomputed entropies only: no logprob scores to blend"
        )
        console.print(f"preset {preset} ({why})", highlight=False)
    estimator = presets.preset(
        preset,
        **params,
        entropy_mode=mode,
        cv=cv,
        n_jobs=jobs,
        random_state=seed,
        slice_dim=slice_dim,
    )
    what = estimator.classifier.family if estimator.classifier else "the classifier"
    with console.status(f"fitting {what} on {int(batch.has_label.sum())} labelled traces"):
        estimator.fit_traces(batch)
    record_model(estimator.card_, model_name)
    estimator.save(output)
    card_md, card_png = card_paths(output)
    title = f"Slice estimator {output.name}" + (f" for model {model_name}" if model_name else "")
    card_md.write_text(card_markdown(estimator.card_, title=title))
    plot_reliability(estimator.card_, card_png)
    clf = estimator.classifier_
    m, t = estimator.card_["metrics"], estimator.card_["training"]
    blended = f" blended with {', '.join(clf.blend)}" if clf.blend else ""
    offsets = estimator.calibration_.offsets_
    console.print(
        f"fitted {clf.family_}{blended} on {t['n']} labelled traces (accuracy "
        f"{t['accuracy']:.3f}); cross-validated AUROC {m['cv_auroc']:.3f}, Brier "
        f"{m['brier']:.4f}, ECE {m['ece']:.4f}; {len(offsets)} {slice_dim} value(s) "
        "calibrated",
        highlight=False,
        soft_wrap=True,
    )
    values = batch.slice_values(slice_dim)[batch.has_label]
    short = sorted({str(v) for v in values if v is not None} - {str(v) for v in offsets})
    if short:
        console.print(
            f"  not calibrated ({len(short)}: {', '.join(short[:5])}"
            f"{', ...' if len(short) > 5 else ''}): fewer than {estimator.min_labels} "
            f"labelled traces each; their estimates carry the transfer term as if new "
            "(collect more labels for them)",
            highlight=False,
            soft_wrap=True,
        )
    if t["n_unlabelled_ignored"]:
        console.print(f"  {t['n_unlabelled_ignored']} unlabelled traces not used", highlight=False)
    console.print(
        f"  fitted for model {model_name}"
        if model_name
        else "  fitted for no named model: `sentinel serve` uses it for every model, with a "
        "warning (name it with --model-name)",
        highlight=False,
    )
    console.print(f"wrote {output}, {card_md} and {card_png}", highlight=False)


def _model_name(given: str | None, named: list[str]) -> str | None:
    """The model to record: ``given``, else the one model the traces name (None if none)."""
    if given is not None:
        if not given.strip():
            raise ConfigError("--model-name is empty; give the generating model's name")
        return given.strip()
    if len(named) > 1:
        shown = ", ".join(repr(m) for m in named[:5]) + (" ..." if len(named) > 5 else "")
        raise ConfigError(
            f"the training traces name {len(named)} models ({shown}); entropy scales differ "
            "between models, so fit one estimator per model (filter the traces by `model`), or "
            "give --model-name NAME to record one name anyway"
        )
    return named[0] if named else None
