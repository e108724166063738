"""The ``lookalike`` command line (typer). Shares the data dir with the server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .config import Settings
from .errors import LookalikeError
from .runtime import Runtime

app = typer.Typer(help="Lookalike: self-hosted visual search.", no_args_is_help=True, pretty_exceptions_enable=False)
library_app = typer.Typer(help="Create, list and delete image libraries.", no_args_is_help=True)
app.add_typer(library_app, name="library")
eval_app = typer.Typer(help="Measure relevance and speed: labelled photo sets, creator search, multi-item queries.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")
creators_app = typer.Typer(help="Creator search: import, refresh and demo creators with their posts.", no_args_is_help=True)
app.add_typer(creators_app, name="creators")
tokens_app = typer.Typer(help="Access tokens and credits of the creator-search API.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
keys_app = typer.Typer(help="Index keys of the Constructor-compatible image search.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = Console()
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", envvar="LOOKALIKE_DATA_DIR", help="State folder (default ~/.lookalike).")


def _runtime(data_dir: Optional[Path]) -> Runtime:
    return Runtime.open(Settings.from_env(data_dir))


def _fail(exc: Exception) -> NoReturn:
    err.print(f"[red]error:[/red] {exc.message if isinstance(exc, LookalikeError) else exc}")
    raise typer.Exit(code=2)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Serve the HTTP API (docs at /docs)."""
    import uvicorn

    from .api import create_app

    uvicorn.run(create_app(_runtime(data_dir), warm=True), host=host, port=port)


@library_app.command("create")
def library_create(
    name: str,
    mode: str = typer.Option("general_search", help="general_search or item_search."),
    model: Optional[str] = typer.Option(None, help="Model id (default efficientnet-lite0)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Create an empty library."""
    rt = _runtime(data_dir)
    try:
        record = rt.libraries.create(name, mode, model)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        rt.close()
    console.print(f"created library [bold]{record.name}[/bold] ({record.mode}, model {record.model_id})")


@library_app.command("list")
def library_list(data_dir: Optional[Path] = DataDir) -> None:
    """List libraries with their image counts."""
    rt = _runtime(data_dir)
    try:
        table = Table("name", "mode", "model", "images")
        for r in rt.libraries.list():
            table.add_row(r.name, r.mode, r.model_id, str(r.image_count))
        console.print(table)
    finally:
        rt.close()


@library_app.command("delete")
def library_delete(name: str, data_dir: Optional[Path] = DataDir) -> None:
    """Delete a library and all its images."""
    rt = _runtime(data_dir)
    try:
        rt.libraries.delete(name)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        rt.close()
    console.print(f"deleted library {name}")


def import_source(rt: Runtime, library: str, source: Path, *, quiet: bool = False):
    """Import a folder / CSV / JSONL into ``library``, skipping stored ids (resumable).

    Returns the ``ImportOutcome``; bad lines and images are reported and skipped.
    """
    from .sources import BadLine, count_items, iter_source

    bad: list[tuple[str, str]] = []

    def items():
        for entry in iter_source(source):
            if isinstance(entry, BadLine):
                bad.append((entry.where, entry.message))
            else:
                yield entry

    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, disable=quiet) as progress:
        task = progress.add_task("import", total=count_items(source))
        outcome = rt.importer.import_items(
            library, items(), skip_existing=True, atomic=False, progress=lambda n: progress.advance(task, n)
        )
    outcome.failed[:0] = bad
    return outcome


@app.command("import")
def import_cmd(
    library: str,
    source: Path = typer.Argument(..., exists=True, help="A folder of images, a .csv or a .jsonl file."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Import images; re-running skips image_ids already stored."""
    rt = _runtime(data_dir)
    try:
        outcome = import_source(rt, library, source)
    except (LookalikeError, ValueError) as exc:
        _fail(exc)
    finally:
        rt.close()
    for where, message in outcome.failed:
        err.print(f"[yellow]skipped[/yellow] {where}: {message}")
    console.print(f"added {len(outcome.added)}, already stored {len(outcome.skipped)}, failed {len(outcome.failed)}")
    if outcome.failed and not outcome.added and not outcome.skipped:
        raise typer.Exit(code=1)


@app.command()
def search(
    library: str,
    image: Optional[Path] = typer.Option(None, "--image", exists=True, help="Query image file."),
    text: Optional[str] = typer.Option(None, "--text", help="Query text."),
    top_k: int = typer.Option(10, "--top-k"),
    filter: Optional[str] = typer.Option(None, "--filter", help="tag_filter as JSON."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Search a library by an image or a text; prints JSON results."""
    import base64

    if (image is None) == (text is None):
        err.print("error: give exactly one of --image or --text")
        raise typer.Exit(code=2)
    try:
        tag_filter = json.loads(filter) if filter else None
    except json.JSONDecodeError as exc:
        err.print(f"error: --filter is not valid JSON ({exc.msg})")
        raise typer.Exit(code=2) from None
    rt = _runtime(data_dir)
    try:
        if image is not None:
            b64 = base64.b64encode(image.read_bytes()).decode()
            results = rt.search.by_image(library, b64, top_k, tag_filter)
        else:
            results = rt.search.by_text(library, text, top_k, tag_filter)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        rt.close()
    json.dump([{"image_id": r.image_id, "image_uri": r.image_uri, "score": r.score, "tags": r.tags} for r in results],
              sys.stdout, indent=2)
    sys.stdout.write("\n")


@app.command()
def demo(
    images: Optional[Path] = typer.Option(None, "--images", exists=True, file_okay=False,
                                          help="Folder of photos (default: photos shipped by installed packages)."),
    library: str = typer.Option("demo", help="Library to build."),
    serve_after: bool = typer.Option(True, "--serve/--no-serve", help="Serve the API afterwards."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Build a demo library from real photos, then serve it."""
    from .demo import demo_photos
    from .service.importer import ImportItem

    rt = _runtime(data_dir)
    try:
        if library not in {r.name for r in rt.libraries.list()}:
            rt.libraries.create(library, "general_search")
        if images is not None:
            outcome = import_source(rt, library, images)
        else:
            items = [ImportItem(image_id=f"{t['source']}/{p.name}", image_uri=str(p), path=str(p), tags=t, where=str(p))
                     for p, t in demo_photos()]
            outcome = rt.importer.import_items(library, items, skip_existing=True, atomic=False)
        count = rt.libraries.get(library).image_count
    except LookalikeError as exc:
        rt.close()
        _fail(exc)
    rt.close()
    console.print(f"library [bold]{library}[/bold]: {count} images (added {len(outcome.added)} now)")
    if serve_after:
        console.print(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
        serve(host=host, port=port, data_dir=data_dir)


@eval_app.command("images")
def eval_images(
    dataset_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder with images/ and labels.csv."),
    model: Optional[str] = typer.Option(None, "--model", help="Model id (default efficientnet-lite0)."),
    mode: str = typer.Option("general_search", "--mode", help="Library mode to evaluate."),
    no_text: bool = typer.Option(False, "--no-text", help="Skip text->image queries."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the figures as JSON here."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Relevance (mAP@100, P@10, R@10) and speed of a model on a labelled photo set."""
    from .evaluation.datasets import load_labels
    from .evaluation.relevance import evaluate_dataset

    settings = Settings.from_env(data_dir)
    total = len(load_labels(dataset_dir))
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("embed", total=total)
            figures = evaluate_dataset(dataset_dir, settings=settings, model_id=model, mode=mode, text=not no_text,
                                       progress=lambda n: progress.advance(task, n))
    except LookalikeError as exc:
        _fail(exc)
    figures = {"dataset": dataset_dir.name, "model": model or settings.default_model, "mode": mode, **figures}
    table = Table("metric", "value", title=f"lookalike eval images {dataset_dir.name}")
    for key, value in figures.items():
        if isinstance(value, dict):  # score bands: one row per band
            for band, cell in value.items():
                table.add_row(f"{key} {band}", ", ".join(f"{k} {v}" for k, v in cell.items()))
        else:
            table.add_row(key, "-" if value is None else str(value))
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2) + "\n")


@eval_app.command("creators")
def eval_creators(
    source: Path = typer.Argument(..., exists=True, dir_okay=False, metavar="FILE.jsonl",
                                  help="Creators written by 'lookalike creators demo' (with its sidecar CSVs)."),
    queries: Optional[Path] = typer.Option(
        None, "--queries", exists=True, file_okay=False,
        help="Labelled folder of query photos (images/ + labels.csv; label 'beaches' matches niche "
             "'corel1k/beaches'); default: the demo's held-out photos."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the figures as JSON here."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", file_okay=False,
        help="Import into this data dir and keep it (a re-run reuses the import); default: a temporary one."),
    limit_queries: Optional[int] = typer.Option(None, "--limit-queries", min=1,
                                                help="Search with at most N query photos, spread over the labels."),
    reference_date: Optional[str] = typer.Option(
        None, "--reference-date", metavar="YYYY-MM-DD", help="Search clock: the demo's reference day (default 2025-06-30)."),
) -> None:
    """Precision@6, nDCG@6 and latency of creator search, with and without filters."""
    from datetime import UTC, datetime

    from .evaluation.creator_eval import evaluate_creators

    try:
        day = datetime.strptime(reference_date, "%Y-%m-%d").replace(tzinfo=UTC) if reference_date else None
    except ValueError:
        _fail(ValueError(f"--reference-date: '{reference_date}' is not a date YYYY-MM-DD"))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err) as progress:
            tasks: dict[str, int] = {}

            def report(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task("importing creators" if phase == "import" else "searching",
                                                     total=total)
                progress.update(tasks[phase], completed=done)

            figures = evaluate_creators(source, queries=queries, settings=Settings.from_env(), progress=report,
                                        data_dir=data_dir, limit_queries=limit_queries,
                                        **({"reference_date": day} if day else {}))
    except (LookalikeError, OSError) as exc:
        _fail(exc)
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


def _default_sop_dir() -> Path:
    """``../shared/datasets/sop_subset`` beside the repository (the checkout's parent)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "sop_subset"


@eval_app.command("multi-item")
def eval_multi_item(
    sop_dir: Optional[Path] = typer.Argument(
        None, file_okay=False, help="Labelled instance set (images/ + labels.csv, label = product id); "
                                    "default ../shared/datasets/sop_subset beside the repository."),
    images: int = typer.Option(60, "--images", min=1, help="Composed query images (2 and 3 items, alternating)."),
    seed: int = typer.Option(11, "--seed", help="Seed of the composed set (same seed, same set)."),
    mode: str = typer.Option("general_search", "--mode", help="Library mode: general_search or item_search."),
    crop_type: str = typer.Option("bbox", "--crop-type", help="Crops the queries embed: bbox or segment."),
    top_k: int = typer.Option(10, "--top-k", min=1, help="Results judged per list (merged and per segment)."),
    library_limit: Optional[int] = typer.Option(
        None, "--library-limit", min=1, help="At most N library photos: the pasted products' others, then distractors."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the figures as JSON here."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", file_okay=False,
        help="Compose and import into this folder and keep it (a re-run embeds only what is missing); "
             "default: a temporary one."),
) -> None:
    """Items of composed 2-3 item images found in the top k, with and without segmentation."""
    from .evaluation.multi_item import evaluate_multi_item

    source = sop_dir if sop_dir is not None else _default_sop_dir()
    if not (source / "labels.csv").is_file():
        _fail(ValueError(f"SOP_DIR: {source} has no labels.csv; pass a labelled instance set such as "
                         "../shared/datasets/sop_subset (images/ + labels.csv)"))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err) as progress:
            tasks: dict[str, int] = {}

            def report(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = progress.add_task("importing library" if phase == "import" else "searching",
                                                     total=total)
                progress.update(tasks[phase], completed=done)

            figures = evaluate_multi_item(source, settings=Settings.from_env(), n_images=images, seed=seed, mode=mode,
                                          crop_type=crop_type, top_k=top_k, progress=report, data_dir=data_dir,
                                          library_limit=library_limit)
    except (LookalikeError, OSError, ValueError) as exc:
        _fail(exc)
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


def _access(data_dir: Optional[Path]):
    """The AccessService over ``<data_dir>/access.db`` (no models loaded: token commands are instant)."""
    from .service.access import AccessService
    from .store.token_store import TokenStore

    return AccessService(TokenStore(Settings.from_env(data_dir).data_dir / "access.db"))


def _credits_milli(text: str) -> int:
    from .service.access import parse_credits

    try:
        return parse_credits(text, field="--credits")
    except LookalikeError as exc:
        _fail(exc)


@tokens_app.command("create")
def tokens_create(
    credits: str = typer.Option(..., "--credits", help="Starting balance in credits, e.g. 10 or 0.15."),
    label: Optional[str] = typer.Option(None, "--label", help="Free text to recognise the token by."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Create a token; prints its secret once (only a hash is stored)."""
    from .service.access import format_credits

    milli = _credits_milli(credits)
    access = _access(data_dir)
    try:
        record, secret = access.create_token(milli, label)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        access.store.close()
    console.print(secret, markup=False, highlight=False)
    console.print(f"id {record.id}, balance {format_credits(record.credits_milli)} credits"
                  + (f", label {record.label}" if record.label else ""), markup=False, highlight=False)
    err.print("Keep the token now: it cannot be shown again.")


@tokens_app.command("list")
def tokens_list(data_dir: Optional[Path] = DataDir) -> None:
    """List tokens (never their secrets)."""
    from datetime import datetime, timezone

    from .service.access import format_credits

    def when(t: Optional[float]) -> str:
        return "" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")

    access = _access(data_dir)
    try:
        table = Table("id", "label", "credits", "created (UTC)", "revoked (UTC)")
        for t in access.list_tokens():
            table.add_row(t.id, t.label or "", format_credits(t.credits_milli), when(t.created_at), when(t.revoked_at))
    finally:
        access.store.close()
    console.print(table)


@tokens_app.command("top-up")
def tokens_top_up(
    token_id: str = typer.Argument(..., metavar="ID", help="Token id from 'tokens list'."),
    credits: str = typer.Option(..., "--credits", help="Credits to add, e.g. 10 or 0.15."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Add credits to a token."""
    from .service.access import format_credits

    milli = _credits_milli(credits)
    access = _access(data_dir)
    try:
        record = access.top_up(token_id, milli)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        access.store.close()
    console.print(f"token {record.id}: balance {format_credits(record.credits_milli)} credits", highlight=False)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: str = typer.Argument(..., metavar="ID", help="Token id from 'tokens list'."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Revoke a token for good: its requests get 401."""
    access = _access(data_dir)
    try:
        access.revoke(token_id)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        access.store.close()
    console.print(f"revoked token {token_id}", highlight=False)


def _key_sections(specs: list[str]) -> dict[str, str]:
    """``["Products=shop", ...]`` -> ``{"Products": "shop"}``; exits 2 on a malformed or repeated one."""
    sections: dict[str, str] = {}
    for spec in specs:
        section, sep, library = spec.partition("=")
        if not sep or not section or not library:
            _fail(ValueError(f"--section {spec!r}: expected NAME=LIBRARY, e.g. Products=shop"))
        if section in sections:
            _fail(ValueError(f"--section {section!r}: given more than once"))
        sections[section] = library
    return sections


def _require_libraries(rt: Runtime, libraries: list[str]) -> None:
    """Raises ``LibraryNotFound`` for the first library that does not exist."""
    for name in libraries:
        rt.libraries.get(name, count=False)


@keys_app.command("create")
def keys_create(
    section: list[str] = typer.Option(..., "--section", help="NAME=LIBRARY, repeatable; e.g. Products=shop."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Create an index key whose sections search the given libraries; prints the key."""
    sections = _key_sections(section)
    rt = _runtime(data_dir)
    try:
        _require_libraries(rt, list(sections.values()))
        key = rt.keys.create(sections)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        rt.close()
    console.print(key, markup=False, highlight=False)


@keys_app.command("list")
def keys_list(data_dir: Optional[Path] = DataDir) -> None:
    """List index keys with their sections."""
    rt = _runtime(data_dir)
    try:
        table = Table("key", "sections (section = library)")
        for k in rt.keys.list():
            table.add_row(k.key, ", ".join(f"{s} = {lib}" for s, lib in k.sections.items()) or "(none)")
    finally:
        rt.close()
    console.print(table)


@keys_app.command("set-section")
def keys_set_section(
    key: str = typer.Argument(..., help="Index key from 'keys list'."),
    name: str = typer.Argument(..., help="Section name, e.g. Products."),
    library: str = typer.Argument(..., help="Library the section searches."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Add a section to a key, or point an existing section at another library."""
    rt = _runtime(data_dir)
    try:
        _require_libraries(rt, [library])
        rt.keys.set_section(key, name, library)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        rt.close()
    console.print(f"key {key}: section {name} = {library}", markup=False, highlight=False)


@keys_app.command("remove-section")
def keys_remove_section(
    key: str = typer.Argument(..., help="Index key from 'keys list'."),
    name: str = typer.Argument(..., help="Section name."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Remove a section from a key."""
    rt = _runtime(data_dir)
    try:
        rt.keys.remove_section(key, name)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        rt.close()
    console.print(f"key {key}: removed section {name}", markup=False, highlight=False)


@keys_app.command("delete")
def keys_delete(
    key: str = typer.Argument(..., help="Index key from 'keys list'."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Delete an index key: its requests get 401 from then on."""
    rt = _runtime(data_dir)
    try:
        rt.keys.delete(key)
    except LookalikeError as exc:
        _fail(exc)
    finally:
        rt.close()
    console.print(f"deleted key {key}", markup=False, highlight=False)


@creators_app.command("import")
def creators_import(
    source: Path = typer.Argument(..., exists=True, dir_okay=False, metavar="FILE.jsonl",
                                  help="One creator with its posts per line."),
    platform: Optional[str] = typer.Option(None, "--platform", help="instagram or tiktok, for lines without one."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Import or refresh creators; unchanged lines are skipped, bad lines reported and skipped."""
    from rich.markup import escape

    from .models import load_model
    from .service.creator_import import CreatorImporter, count_lines
    from .store.creator_store import CreatorStore

    settings = Settings.from_env(data_dir)
    store = CreatorStore(settings.data_dir / "creators.db")
    importer = CreatorImporter(store, lambda model_id: load_model(model_id, settings.model_cache_dir), settings)
    columns = (TextColumn("importing creators"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("import", total=count_lines(source))
            outcome = importer.import_jsonl(source, default_platform=platform,
                                            progress=lambda n: progress.advance(task, n))
    except (LookalikeError, OSError) as exc:
        _fail(exc)
    finally:
        store.close()
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
    images: Optional[list[Path]] = typer.Option(
        None, "--images", exists=True, file_okay=False,
        help="Labelled set (images/ + labels.csv); repeat for several (default: ../shared/datasets/*)."),
    holdout: float = typer.Option(0.1, "--holdout", help="Share of each label's photos held out as queries."),
    reference_date: Optional[str] = typer.Option(
        None, "--reference-date", metavar="YYYY-MM-DD",
        help="Post dates count back from this day (default 2025-06-30)."),
) -> None:
    """Write demo creators whose posts are real labelled photos, plus held-out query photos."""
    from datetime import UTC, datetime

    from .evaluation.creator_demo import REFERENCE_DATE, build_demo, default_image_dirs

    dirs = list(images) if images else default_image_dirs()
    if not dirs:
        _fail(ValueError("--images: no labelled set given and none found in ../shared/datasets beside the repository"))
    try:
        day = (datetime.strptime(reference_date, "%Y-%m-%d").replace(tzinfo=UTC)
               if reference_date else REFERENCE_DATE)
    except ValueError:
        _fail(ValueError(f"--reference-date: '{reference_date}' is not a date YYYY-MM-DD"))
    try:
        report = build_demo(dirs, out, creators, seed, holdout=holdout, reference_date=day)
    except (LookalikeError, OSError) as exc:
        _fail(exc)
    for reason in report.skipped:
        err.print(f"[yellow]skipped set[/yellow] {reason}", highlight=False)
    console.print(f"{report.creators} creators ({report.instagram} instagram, {report.tiktok} tiktok), "
                  f"{report.posts} posts from {report.post_images} photos of {len(report.labels)} labels "
                  f"({', '.join(report.sets)}) -> {report.out}", markup=False, highlight=False)
    console.print(f"{report.held_out} held-out query photos -> {report.queries}; niches -> {report.niches}",
                  markup=False, highlight=False)


def main() -> None:  # pragma: no cover
    app()
