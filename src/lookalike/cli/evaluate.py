"""``lookalike eval``: relevance and speed on labelled photo sets, creator search, multi-item queries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..config import Settings
from ..errors import LookalikeError
from .common import DataDir, console, err, fail

#: The phases of ``eval images`` after the import, as their progress bars are labelled.
EVAL_PHASES = {"queries": "image queries", "latency": "timed queries"}

eval_app = typer.Typer(help="Measure relevance and speed: labelled photo sets, creator search, multi-item queries.",
                       no_args_is_help=True)

@eval_app.command("images")
def eval_images(
    dataset_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder with images/ and labels.csv."),
    model: str | None = typer.Option(None, "--model", help="Model id (default efficientnet-lite0-multilingual)."),
    mode: str = typer.Option("general_search", "--mode", help="Library mode to evaluate."),
    no_text: bool = typer.Option(False, "--no-text", help="Skip text->image queries."),
    languages: str | None = typer.Option(
        None, "--languages", metavar="fr,es,...",
        help="Also run the text queries translated into these languages (columns of --translations)."),
    translations: Path | None = typer.Option(
        None, "--translations", exists=True, dir_okay=False, metavar="FILE.csv",
        help="Translated queries: label,<lang>,... (default: the packaged corel1k file)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the figures as JSON here."),
    data_dir: Path | None = DataDir,
) -> None:
    """Relevance (mAP@100, P@10, R@10) and speed of a model on a labelled photo set."""
    from ..evaluation.datasets import load_labels
    from ..evaluation.relevance import evaluate_dataset

    settings = Settings.from_env(data_dir)
    total = len(load_labels(dataset_dir))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("embedding", total=total)
            phases: dict[str, TaskID] = {}

            def phase(name: str, done: int, of: int) -> None:
                # one bar per phase after the import: image queries, then timed queries
                if name not in phases:
                    phases[name] = progress.add_task(EVAL_PHASES.get(name, name), total=of)
                progress.update(phases[name], completed=done)

            figures = evaluate_dataset(dataset_dir, settings=settings, model_id=model, mode=mode, text=not no_text,
                                       languages=[x.strip() for x in (languages or "").split(",") if x.strip()],
                                       translations=translations, progress=lambda n: progress.advance(task, n),
                                       phase=phase)
    except (LookalikeError, ValueError) as exc:
        fail(exc)
    figures = {"dataset": dataset_dir.name, "model": model or settings.default_model, "mode": mode, **figures}
    table = Table("metric", "value", title=f"lookalike eval images {dataset_dir.name}")
    for key, value in figures.items():
        if isinstance(value, dict):  # score bands, languages: one row per band / language
            for band, cell in value.items():
                table.add_row(f"{key} {band}", ", ".join(f"{k} {v}" for k, v in cell.items() if not isinstance(v, dict)))
        else:
            table.add_row(key, "-" if value is None else str(value))
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2) + "\n")


@eval_app.command("creators")
def eval_creators(
    source: Path = typer.Argument(..., exists=True, dir_okay=False, metavar="FILE.jsonl",
                                  help="Creators written by 'lookalike creators demo' (with its sidecar CSVs)."),
    queries: Path | None = typer.Option(
        None, "--queries", exists=True, file_okay=False,
        help="Labelled folder of query photos (images/ + labels.csv; label 'beaches' matches niche "
             "'corel1k/beaches'); default: the demo's held-out photos."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the figures as JSON here."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", file_okay=False,
        help="Import into this data dir and keep it (a re-run reuses the import); default: a temporary one."),
    limit_queries: int | None = typer.Option(None, "--limit-queries", min=1,
                                                help="Search with at most N query photos, spread over the labels."),
    reference_date: str | None = typer.Option(
        None, "--reference-date", metavar="YYYY-MM-DD", help="Search clock: the demo's reference day (default 2025-06-30)."),
) -> None:
    """Precision@6, nDCG@6 and latency of creator search, with and without filters."""
    from datetime import UTC, datetime

    from ..evaluation.creator_eval import evaluate_creators

    try:
        day = datetime.strptime(reference_date, "%Y-%m-%d").replace(tzinfo=UTC) if reference_date else None
    except ValueError:
        fail(ValueError(f"--reference-date: '{reference_date}' is not a date YYYY-MM-DD"))
    try:
        with _phased_progress("importing creators") as report:
            figures = evaluate_creators(source, queries=queries, settings=Settings.from_env(), progress=report,
                                        data_dir=data_dir, limit_queries=limit_queries,
                                        **({"reference_date": day} if day else {}))
    except (LookalikeError, OSError) as exc:
        fail(exc)
    figures = {"file": source.name, **figures}
    console.print(_creator_eval_table(figures))
    console.print(", ".join(f"{k} {figures[k]}" for k in (
        "n_creators", "n_posts", "n_queries", "n_queries_skipped", "import_seconds", "import_images_per_s",
        "import_failed", "filter_violations", "reference_date")), highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2) + "\n")


def _creator_eval_table(figures: dict) -> Table:
    """One row per scope (all, each platform, each filter) of ``evaluate_creators``' figures."""
    table = Table("scope / filter", "searches", "P@6", "nDCG@6", "P@6 ceiling", "p50 ms", "p95 ms",
                  title=f"lookalike eval creators {figures['file']}")

    def row(name: str, f: dict) -> None:
        cells = [f.get(k) for k in ("n_searches", "creator_p6", "creator_ndcg6", "p6_ceiling", "query_p50_ms",
                                    "query_p95_ms")]
        table.add_row(name, *("-" if c is None else str(c) for c in cells))

    row("all", figures)
    for platform, f in figures["platforms"].items():
        row(platform, f)
    for name, f in figures.get("sets", {}).items():
        row(f"set {name}", f)
    table.add_section()
    for name, f in figures["filtered"].items():
        row(name, f)
    return table


@contextmanager
def _phased_progress(import_label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress display with one bar per phase (``import``, then ``search``); yields the
    ``progress(phase, done, total)`` callback the evaluation functions take."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err) as progress:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(import_label if phase == "import" else "searching", total=total)
            progress.update(tasks[phase], completed=done)

        yield report


def _default_sop_dir() -> Path | None:
    """``sop_subset`` in the labelled sets' folder (``$LOOKALIKE_DATASETS``, else
    ``../shared/datasets``); ``None`` on a fresh clone."""
    from ..evaluation.datasets import datasets_root

    root = datasets_root()
    return root / "sop_subset" if root is not None else None


@eval_app.command("multi-item")
def eval_multi_item(
    sop_dir: Path | None = typer.Argument(
        None, file_okay=False, help="Labelled instance set (images/ + labels.csv, label = product id); "
                                    "default sop_subset in $LOOKALIKE_DATASETS, else ../shared/datasets."),
    images: int = typer.Option(60, "--images", min=1, help="Composed query images (2 and 3 items, alternating)."),
    seed: int = typer.Option(11, "--seed", help="Seed of the composed set (same seed, same set)."),
    mode: str = typer.Option("general_search", "--mode", help="Library mode: general_search or item_search."),
    crop_type: str = typer.Option("bbox", "--crop-type", help="Crops the queries embed: bbox or segment."),
    top_k: int = typer.Option(10, "--top-k", min=1, help="Results judged per list (merged and per segment)."),
    library_limit: int | None = typer.Option(
        None, "--library-limit", min=1, help="At most N library photos: the pasted products' others, then distractors."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the figures as JSON here."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", file_okay=False,
        help="Compose and import into this folder and keep it (a re-run embeds only what is missing); "
             "default: a temporary one."),
) -> None:
    """Items of composed 2-3 item images found in the top k, with and without segmentation."""
    from ..evaluation.multi_item import evaluate_multi_item

    source = sop_dir if sop_dir is not None else _default_sop_dir()
    if source is None or not (source / "labels.csv").is_file():
        where = (f"{source} has no labels.csv" if source is not None
                 else "no sop_subset in $LOOKALIKE_DATASETS or ../shared/datasets")
        fail(ValueError(f"SOP_DIR: {where}; pass a labelled instance set (images/ + labels.csv, label = product id)"
                        " as the argument, e.g. lookalike eval multi-item ../shared/datasets/sop_subset"))
    try:
        with _phased_progress("importing library") as report:
            figures = evaluate_multi_item(source, settings=Settings.from_env(), n_images=images, seed=seed, mode=mode,
                                          crop_type=crop_type, top_k=top_k, progress=report, data_dir=data_dir,
                                          library_limit=library_limit)
    except (LookalikeError, OSError, ValueError) as exc:
        fail(exc)
    figures = {"dataset": source.name, **figures}
    console.print(_multi_item_table(figures))
    console.print(", ".join(f"{k} {figures[k]}" for k in (
        "n_images", "n_items", "library_size", "mode", "crop_type", "top_k", "seed", "detections_per_image",
        "plain_p50_ms", "plain_p95_ms", "segmented_p50_ms", "segmented_p95_ms")), highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2) + "\n")


def _multi_item_table(figures: dict) -> Table:
    """One row per scope (all, each background, each item count) of ``evaluate_multi_item``'s figures."""
    k = figures["top_k"]
    table = Table("scope", "items", "plain", "merged", "own seg", "any seg", "det rec", "true mrg", "true own",
                  title=f"lookalike eval multi-item {figures['dataset']}: items found in the top {k}")
    table.columns[0].no_wrap = True
    keys = ("n_items", "items_found_top10_plain", "items_found_top10_segmented", "items_found_top10_per_segment",
            "items_found_top10_any_segment", "detection_recall", "items_found_top10_true_boxes_merged",
            "items_found_top10_true_box")
    table.caption = ("product in: the plain query's list; the segmented query's merged list; its segment's own list "
                     "(IoU >= 0.5); any segment's list. det rec: detection recall (IoU >= 0.5). true: the pasted "
                     "boxes as segments (a perfect detector): merged list, own list")

    def cells(f: dict) -> list[str]:
        return [str(f["n_items"]), *(f"{f[key]:.3f}" for key in keys[1:])]

    table.add_row("all", *cells(figures))
    for group in ("by_background", "by_item_count"):
        for name, f in figures[group].items():
            table.add_row(f"{name} items" if group == "by_item_count" else name, *cells(f))
    return table


