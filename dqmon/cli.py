"""The `dqmon` command line: run, demo, validate, schema, check."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from dqmon.errors import ConfigError, DqmonError

if TYPE_CHECKING:
    import polars as pl

    from dqmon.config.loader import ChecksConfig
    from dqmon.config.models import Dataset, Pipeline

app = typer.Typer(
    help="dqmon: streaming data-quality and observability monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _start() -> None:
    """Before any command reads a checks file: malloc arenas are capped while no library has
    started a thread yet and malloc's thresholds fixed, then third-party plug-ins register their kinds."""
    from dqmon.registry import load_plugins
    from dqmon.runtime.memory import fix_malloc_thresholds, limit_malloc_arenas

    limit_malloc_arenas()
    fix_malloc_thresholds()
    load_plugins()


ChecksDir = Annotated[Path, typer.Option("--checks", "-c", help="checks directory (YAML files)")]
DatasetRef = Annotated[str, typer.Option("--dataset", "-d", help="dataset name or pipeline/dataset")]


def _fail_config(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        typer.echo(str(problem), err=True)
    typer.echo(f"rejected: {len(exc.problems)} problem(s); nothing was loaded", err=True)
    raise typer.Exit(2)


def _dataset_and_file(
    checks: Path, dataset: str, file: Path
) -> tuple[ChecksConfig, Pipeline, Dataset, pl.DataFrame]:
    """The checks, the named dataset and the file's rows; exit 2 with the reason on any problem."""
    from dqmon.config.loader import load_checks
    from dqmon.tables import read_table

    try:
        config = load_checks(checks)
        pipeline, ds = config.find_dataset(dataset)
    except ConfigError as exc:
        _fail_config(exc)
    except KeyError as exc:
        typer.echo(str(exc.args[0]), err=True)
        raise typer.Exit(2) from None
    try:
        return config, pipeline, ds, read_table(file)
    except (OSError, DqmonError, ValueError) as exc:
        typer.echo(f"cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def validate(directory: Annotated[Path, typer.Argument(help="checks directory or file")]) -> None:
    """Validate a checks directory; print `file:line:col: key.path: reason` for every problem."""
    from dqmon.config.loader import load_checks

    try:
        config = load_checks(directory)
    except ConfigError as exc:
        _fail_config(exc)
    datasets = sum(len(p.datasets) for p in config.pipelines)
    checks = sum(len(d.checks) for p in config.pipelines for d in p.datasets)
    typer.echo(
        f"ok: {len(config.files)} file(s), {len(config.pipelines)} pipeline(s), "
        f"{datasets} dataset(s), {checks} check(s)"
    )
    for pipeline in config.pipelines:
        for dataset in pipeline.datasets:
            kinds = ", ".join(entry.check_name() for entry in dataset.checks)
            typer.echo(f"  {pipeline.pipeline}/{dataset.name} [{dataset.source.kind}]: {kinds}")
        for link in pipeline.links:
            typer.echo(
                f"  {pipeline.pipeline}/{link.spec.result_dataset()} [link {link.kind}]: {link.check_name()}"
            )


@app.command()
def schema() -> None:
    """Print the JSON Schema of checks files (for editor completion)."""
    from dqmon.config.schema import checks_json_schema

    typer.echo(json.dumps(checks_json_schema(), indent=2))


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="NDJSON, Parquet or CSV file holding one micro-batch")],
    checks: ChecksDir,
    dataset: DatasetRef,
    as_json: Annotated[bool, typer.Option("--json", help="print results as JSON lines")] = False,
    now: Annotated[
        str | None, typer.Option("--now", help="evaluate as of this ISO-8601 time (default: now)")
    ] = None,
) -> None:
    """Run a dataset's checks once over a file; exit 1 when any check fails or errors."""
    from dqmon.testing import render_results, run_checks

    config, pipeline, ds, frame = _dataset_and_file(checks, dataset, file)
    at = datetime.fromisoformat(now.replace("Z", "+00:00")) if now else datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    results = run_checks(frame, pipeline, ds, base_dir=config.base_dir(pipeline.pipeline), now=at)
    if as_json:
        for result in results:
            typer.echo(json.dumps(result.to_dict(), default=str))
    else:
        render_results(results)
    if any(r.failed for r in results):
        raise typer.Exit(1)


@app.command()
def backtest(
    file: Annotated[Path, typer.Argument(help="NDJSON, Parquet or CSV file of historical records")],
    checks: ChecksDir,
    dataset: DatasetRef,
    window: Annotated[
        str | None, typer.Option("--window", help="window size (default: the dataset's window)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print alert events as JSON lines")] = False,
) -> None:
    """Replay a file window by window (by event time) through the checks and alert rules."""
    from rich.console import Console
    from rich.table import Table

    from dqmon.backtest import backtest as run_backtest
    from dqmon.config.durations import parse_duration

    config, pipeline, ds, frame = _dataset_and_file(checks, dataset, file)
    try:
        size = parse_duration(window) if window else None
        report = run_backtest(frame, pipeline, ds, base_dir=config.base_dir(pipeline.pipeline), window=size)
    except (ValueError, DqmonError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if as_json:
        for event in report.alerts:
            typer.echo(
                json.dumps(
                    {
                        "at": event.at.isoformat(),
                        "event": event.event,
                        "check": event.check,
                        "message": event.message,
                    }
                )
            )
        return
    console = Console()
    summary = Table(
        title=f"{pipeline.pipeline}/{ds.name}: {report.rows:,} rows in {report.windows:,} windows"
    )
    for column in ("check", "ok", "warn", "fail", "error"):
        summary.add_column(column)
    for check_name, counts in report.evaluations.items():
        summary.add_row(check_name, *(str(counts[s]) for s in ("ok", "warn", "fail", "error")))
    console.print(summary)
    events = Table(title=f"alert events ({len(report.alerts)})")
    for column in ("at", "event", "check", "message"):
        events.add_column(column, overflow="fold")
    for event in report.alerts:
        events.add_row(event.at.isoformat(timespec="seconds"), event.event, event.check, event.message)
    console.print(events)


@app.command()
def run(
    checks: ChecksDir,
    http_port: Annotated[int | None, typer.Option("--http-port", help="override DQMON_HTTP_PORT")] = None,
    live: Annotated[
        bool | None, typer.Option("--live/--no-live", help="live status table (default: on a terminal)")
    ] = None,
) -> None:
    """Monitor every dataset of a checks directory until SIGTERM (the sidecar's main process)."""
    from dqmon.config.settings import Settings
    from dqmon.runtime.app import Runtime, live_display_enabled
    from dqmon.telemetry.logging import configure_logging

    settings = Settings()
    if http_port is not None:
        settings = settings.model_copy(update={"http_port": http_port})
    redactor = configure_logging(settings.log_format, settings.log_level)
    try:
        runtime = Runtime(checks, settings, redactor=redactor)
    except ConfigError as exc:
        _fail_config(exc)
    runtime.start()
    show = live_display_enabled() if live is None else live
    if not show:
        runtime.run_forever()
        return
    from rich.live import Live

    with Live(runtime.board.render(), refresh_per_second=2, transient=False) as display:
        runtime.run_forever(on_tick=lambda: display.update(runtime.board.render()))


@app.command()
def demo(
    checks: Annotated[Path, typer.Option("--checks", "-c", help="checks directory")] = Path("checks"),
    short: Annotated[bool, typer.Option("--short", help="shorter timeline (~3.5 min instead of ~6)")] = False,
    http_port: Annotated[int, typer.Option("--http-port", help="metrics port (a free one if taken)")] = 9464,
    pipeline: Annotated[
        bool, typer.Option("--pipeline", help="the pipeline-links demo (needs PostgreSQL and Redis)")
    ] = False,
) -> None:
    """Run dqmon on an embedded broker with a synthetic exchange and scripted incidents."""
    import os

    from rich.console import Console

    from dqmon.demo.run import DEFAULT_FEATURES_DSN, report_table, run_demo
    from dqmon.telemetry.logging import configure_logging

    configure_logging("console", "WARNING")
    console = Console(stderr=True)
    if pipeline:
        from dqmon.demo.pipeline_demo import run_pipeline_demo

        dsn = os.environ.get("FEATURES_DSN", DEFAULT_FEATURES_DSN)
        redis_url = os.environ.get("DQMON_DEMO_REDIS_URL", "redis://127.0.0.1:6379/0")
        report = run_pipeline_demo(dsn, redis_url, short=short, http_port=http_port, console=console)
    else:
        report = run_demo(checks, short=short, http_port=http_port, console=console)
    for note in report.notes:
        console.print(f"note: {note}")
    Console().print(report_table(report))
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except DqmonError as exc:
        typer.echo(f"dqmon: {exc}", err=True)
        sys.exit(2)
