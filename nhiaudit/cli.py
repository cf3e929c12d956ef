"""The command line: a thin Typer client of the library.

Each command opens the store, calls a few library functions, renders with Rich, and maps library
errors to exit codes. Every value that came from a log is shown as ``rich.text.Text`` after
``terminal_safe`` (never parsed as markup, no control characters reach the terminal).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from nhiaudit import __version__, ingest, query, store
from nhiaudit.errors import NhiauditError, NotFoundError
from nhiaudit.sources import SOURCES
from nhiaudit.textsafe import terminal_safe

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

app = typer.Typer(
    name="nhiaudit",
    help="Audit and forensics for non-human identities and AI agents.",
    pretty_exceptions_show_locals=False,  # a traceback must never print a credential
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[
    Optional[Path],
    typer.Option("--db", help="Store file (default: $NHIAUDIT_DB, else ./nhiaudit.duckdb).", show_default=False),
]


def t(value: object, limit: int | None = 200) -> Text:
    """A log value made safe for the terminal."""
    return Text(terminal_safe(value, limit))


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    err_console.print(Text("error: ", style="bold red") + Text(terminal_safe(message)))
    return typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        console.print(f"nhiaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Audit and forensics for non-human identities and AI agents."""


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Log files or directories (recursive; .gz ok).")],
    db: DbOption = None,
    source: Annotated[Optional[str], typer.Option("--source", help="Force this source for every file.")] = None,
) -> None:
    """Load log files into the store; print a summary per source."""
    db_path = store.resolve_db_path(db)
    try:
        con = store.connect(db_path)
        with _progress() as progress:
            result = ingest.ingest(con, paths, source=source, progress=_progress_callback(progress))
    except NhiauditError as exc:
        raise fail(str(exc)) from None
    _print_ingest_summary(result, db_path)
    if result.unrecognized:
        err_console.print(Text(f"{len(result.unrecognized)} file(s) not recognized by any source "
                               "(use --source NAME to force one; `nhiaudit sources` lists them):", style="yellow"))
        for path in result.unrecognized:
            err_console.print(Text("  " + terminal_safe(path)))
        raise typer.Exit(EXIT_ERROR)
    if any(f.rejected and f.loaded == 0 and f.read for f in result.files):
        raise typer.Exit(EXIT_ERROR)  # a file whose evidence could not be read at all


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[records]} records"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _progress_callback(progress: Progress):
    state: dict[str, object] = {}

    def on_event(kind: str, result: ingest.FileResult) -> None:
        if "task" not in state:
            state["task"] = progress.add_task("ingest", total=None, records=0)
            state["records"] = 0
        task = state["task"]
        if kind == "start":
            progress.update(task, description=terminal_safe(result.path.name, 40))
        else:
            state["records"] = int(state["records"]) + result.read
            progress.update(task, advance=result.size, records=state["records"])

    return on_event


def _print_ingest_summary(result: ingest.IngestResult, db_path: Path) -> None:
    table = Table(title=f"Ingested into {terminal_safe(db_path)}", title_justify="left")
    for column in ("source", "files", "records", "loaded", "rejected", "duplicates", "seconds"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for name, row in result.by_source().items():
        files = f"{row['files']}" + (f" ({row['skipped']} already in store)" if row["skipped"] else "")
        table.add_row(
            name, files, f"{row['read']:,}", f"{row['loaded']:,}",
            Text(f"{row['rejected']:,}", style="red" if row["rejected"] else ""),
            f"{row['duplicates']:,}", f"{row['seconds']:.2f}",
        )
    console.print(table)
    for f in result.files:
        if f.note and not f.already_ingested:
            console.print(Text("  note: ", style="yellow") + t(f.path, None) + Text(": ") + t(f.note, 300))
    if result.ignored:
        console.print(Text(f"  {len(result.ignored)} non-log file(s) skipped (.md, .toml, .py …)", style="dim"))
    if any(f.rejected for f in result.files):
        console.print(Text("  rejected records: nhiaudit sql \"SELECT path, line, reason FROM rejected\"",
                           style="dim"))


@app.command("sources")
def sources_cmd() -> None:
    """List what can be ingested and how each source is detected."""
    table = Table(title="Sources (detection order)", title_justify="left", show_lines=True)
    table.add_column("source", style="bold")
    table.add_column("reads")
    table.add_column("detected by")
    for name, module in SOURCES.items():
        table.add_row(name, module.READS, module.DETECTION)
    console.print(table)


@app.command("sql")
def sql_cmd(
    statement: Annotated[str, typer.Argument(help="One SQL statement (read-only).")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print rows as CSV.")] = False,
) -> None:
    """Run read-only SQL against the store."""
    try:
        con = store.connect(store.resolve_db_path(db), read_only=True)
        columns, rows = query.run(con, statement)
    except NhiauditError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(query.to_json(columns, rows))
    elif as_csv:
        sys.stdout.write(query.to_csv(columns, rows))
    else:
        table = Table(*columns)
        for row in rows:
            table.add_row(*(t(v) for v in row))
        console.print(table)
        console.print(Text(f"{len(rows)} row(s)", style="dim"))


def _not_found(exc: NotFoundError) -> typer.Exit:
    if exc.suggestions:
        err_console.print(Text("closest ids: " + ", ".join(terminal_safe(s) for s in exc.suggestions)))
    return fail(str(exc))
