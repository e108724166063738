"""``lookalike creators``: import, refresh and demo creators with their posts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from ..errors import LookalikeError
from ..service.creators.platforms import PLATFORMS
from .common import DataDir, console, err, fail, open_runtime

creators_app = typer.Typer(help="Creator search: import, refresh and demo creators with their posts.", no_args_is_help=True)

@creators_app.command("import")
def creators_import(
    source: Path = typer.Argument(..., exists=True, dir_okay=False, metavar="FILE.jsonl",
                                  help="One creator with its posts per line."),
    platform: str | None = typer.Option(None, "--platform", help=f"{' or '.join(PLATFORMS)}, for lines without one."),
    data_dir: Path | None = DataDir,
) -> None:
    """Import or refresh creators; unchanged lines are skipped, bad lines reported and skipped."""
    from rich.markup import escape

    from ..service.creators.importer import count_lines

    rt = open_runtime(data_dir)  # opens no model until a line needs one
    columns = (TextColumn("importing creators"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("import", total=count_lines(source))
            outcome = rt.creator_importer.import_jsonl(source, default_platform=platform,
                                            progress=lambda n: progress.advance(task, n))
    except (LookalikeError, OSError) as exc:
        fail(exc)
    finally:
        rt.close()
    for _, message in outcome.failed:
        err.print(f"[yellow]skipped[/yellow] {escape(message)}", highlight=False)
    console.print(f"imported {len(outcome.imported)}, unchanged {len(outcome.unchanged)}, "
                  f"failed {len(outcome.failed)} (posts: {outcome.posts_added} added, {outcome.posts_removed} "
                  f"removed, {outcome.posts_embedded} embedded)")


@creators_app.command("demo")
def creators_demo(
    out: Path = typer.Option(..., "--out", dir_okay=False, metavar="FILE.jsonl", help="JSONL file to write."),
    creators: int = typer.Option(500, "--creators", help="How many creators (1..100000)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same arguments give the same bytes."),
    images: list[Path] | None = typer.Option(
        None, "--images", exists=True, file_okay=False,
        help="Labelled set (images/ + labels.csv); repeat for several (default: every set in $LOOKALIKE_DATASETS,"
             " else ../shared/datasets, else the photos installed packages ship, labelled by folder)."),
    holdout: float = typer.Option(0.1, "--holdout", help="Share of each label's photos held out as queries."),
    reference_date: str | None = typer.Option(
        None, "--reference-date", metavar="YYYY-MM-DD",
        help="Post dates count back from this day (default 2025-06-30)."),
) -> None:
    """Write demo creators whose posts are real labelled photos, plus held-out query photos."""
    from datetime import UTC, datetime

    from ..evaluation.creator_demo import REFERENCE_DATE, build_demo, default_image_dirs, packaged_photo_set

    dirs = list(images) if images else default_image_dirs()
    if not dirs:
        packaged = out.resolve().parent / f"{out.stem}.photos"
        err.print(f"no labelled photo set in $LOOKALIKE_DATASETS or ../shared/datasets: using the photos installed "
                  f"packages ship, labelled by folder ({packaged / 'labels.csv'}); --images DIR gives a real "
                  "labelled set", highlight=False, markup=False)
        try:
            dirs = [packaged_photo_set(packaged)]
        except OSError as exc:
            fail(exc)
    try:
        day = (datetime.strptime(reference_date, "%Y-%m-%d").replace(tzinfo=UTC)
               if reference_date else REFERENCE_DATE)
    except ValueError:
        fail(ValueError(f"--reference-date: '{reference_date}' is not a date YYYY-MM-DD"))
    try:
        report = build_demo(dirs, out, creators, seed, holdout=holdout, reference_date=day)
    except (LookalikeError, OSError) as exc:
        fail(exc)
    for reason in report.skipped:
        err.print(f"[yellow]skipped set[/yellow] {reason}", highlight=False)
    console.print(f"{report.creators} creators ({report.instagram} instagram, {report.tiktok} tiktok), "
                  f"{report.posts} posts from {report.post_images} photos of {len(report.labels)} labels "
                  f"({', '.join(report.sets)}) -> {report.out}", markup=False, highlight=False)
    console.print(f"{report.held_out} held-out query photos -> {report.queries}; niches -> {report.niches}",
                  markup=False, highlight=False)


