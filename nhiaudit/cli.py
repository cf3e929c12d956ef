"""The command line: a thin Typer client of the library.

Each command opens the store, calls a few library functions, renders with Rich, and maps library
errors to exit codes. Every value that came from a log is shown as ``rich.text.Text`` after
``terminal_safe`` (never parsed as markup, no control characters reach the terminal).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from nhiaudit import __version__
from nhiaudit.errors import NhiauditError, NotFoundError, RuleError
from nhiaudit.model import DEFAULT_MEMORY_LIMIT, FAIL_ON, FRAMEWORKS, SEVERITIES
from nhiaudit.textsafe import terminal_safe

if TYPE_CHECKING:
    from types import ModuleType

    from rich.progress import Progress

    from nhiaudit import export, ingest, query, report, rules, session, store, trace
    from nhiaudit.model import AuditedAction, Finding


def _lazy(name: str) -> ModuleType:
    """The module ``name``, executed on its first attribute access (the standard library's
    ``importlib.util.LazyLoader``). ``nhiaudit --help``, ``--version`` and shell completion then never
    load DuckDB or the correlation machinery; a command pays only for what it touches."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)  # as the import system does: `nhiaudit.session` works
    return module


if not TYPE_CHECKING:
    query, report, rules, session, store, trace = (
        _lazy(f"nhiaudit.{name}") for name in ("query", "report", "rules", "session", "store", "trace")
    )
# The ingest machinery (every source module) and the report writers are imported by the commands
# that use them.

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

app = typer.Typer(
    name="nhiaudit",
    help="Audit and forensics for non-human identities and AI agents.",
    pretty_exceptions_show_locals=False,  # a traceback must never print a credential
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        metavar="FILE",
        help="Policy file (default: $NHIAUDIT_POLICY, else ./nhiaudit.toml).",
        show_default=False,
    ),
]
MemoryOption = Annotated[
    str,
    typer.Option(
        "--memory-limit",
        metavar="SIZE",
        envvar="NHIAUDIT_MEMORY_LIMIT",
        help="DuckDB memory cap while loading or correlating (spills to disk beyond it).",
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", metavar="FILE", help="Store file (default: $NHIAUDIT_DB, else ./nhiaudit.duckdb).", show_default=False
    ),
]
LakeOption = Annotated[
    Path | None,
    typer.Option(
        "--lake",
        metavar="DIR",
        help="Audit a Parquet lake written by `nhiaudit export` instead of a store.",
        show_default=False,
    ),
]


def t(value: object, limit: int | None = 200) -> Text:
    """A log value made safe for the terminal."""
    return Text(terminal_safe(value, limit))


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print ``error: message`` (one problem a line when it holds several) and return the Exit."""
    first, *more = message.splitlines() or [""]
    err_console.print(Text("error: ", style="bold red") + Text(terminal_safe(first)))
    for line in more:
        err_console.print(Text("  " + terminal_safe(line)))
    return typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """The one place library errors become messages and exit codes: every command runs in it.

    A bad rule lists every problem, an unknown id the closest ids; anything else the user can act
    on (input, policy, store) prints its message and exits 2. Other exceptions are bugs: they
    propagate (Typer prints the traceback without local variables).
    """
    try:
        yield
    except RuleError as exc:
        for problem in exc.problems:
            err_console.print(t(problem, None))
        raise fail(f"{len(exc.problems)} problem(s) in rule files.") from None
    except NotFoundError as exc:
        if exc.suggestions:
            err_console.print(Text("closest ids: " + ", ".join(terminal_safe(s) for s in exc.suggestions)))
        raise fail(str(exc)) from None
    except NhiauditError as exc:
        raise fail(str(exc)) from None


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
    source: Annotated[
        str | None, typer.Option("--source", metavar="NAME", help="Force this source for every file.")
    ] = None,
    policy: PolicyOption = None,
    memory_limit: MemoryOption = DEFAULT_MEMORY_LIMIT,
    retry_rejected: Annotated[
        bool,
        typer.Option(
            "--retry-rejected",
            help="Load again files already stored with rejected records (e.g. after an upgrade).",
        ),
    ] = False,
) -> None:
    """Load log files into the store; print a summary per source."""
    db_path = store.resolve_db_path(db)
    with errors():
        options = session.load(policy).sources  # [sources.envoy] fields, …
        limit = store.memory_limit(memory_limit)
        with closing(store.connect(db_path)) as con, _progress() as progress:
            store.set_memory_limit(con, limit)
            from nhiaudit import ingest

            try:
                result = ingest.ingest(
                    con,
                    paths,
                    source=source,
                    progress=_progress_callback(progress),
                    options=options,
                    retry_rejected=retry_rejected,
                )
            except ingest.IngestInterrupted as stopped:
                progress.stop()
                _print_ingest_summary(stopped.result, db_path)
                raise
    _print_ingest_summary(result, db_path)
    failed = False
    if result.unrecognized:
        err_console.print(
            Text(
                f"{len(result.unrecognized)} file(s) not recognized by any source "
                "(use --source NAME to force one; `nhiaudit sources` lists them):",
                style="yellow",
            )
        )
        for path in result.unrecognized:
            err_console.print(Text("  " + terminal_safe(path)))
        failed = True
    if result.empty:
        console.print(
            Text(f"  {len(result.empty)} empty file(s) (no bytes, nothing to load): ", style="dim")
            + t(", ".join(ingest.path_text(p) for p in result.empty[:5]) + (" …" if len(result.empty) > 5 else ""), 300)
        )
    if result.unreadable:
        err_console.print(Text(f"{len(result.unreadable)} path(s) could not be read:", style="yellow"))
        for path, why in result.unreadable:
            err_console.print(Text("  " + terminal_safe(ingest.path_text(path)) + ": " + terminal_safe(why)))
        failed = True
    if any(f.rejected and f.loaded == 0 and f.read for f in result.files):
        failed = True  # a file whose evidence could not be read at all
    if not any(f.read or f.already_ingested for f in result.files):
        # DESIGN §7: a run without evidence never exits 0.
        err_console.print(
            Text(
                "no evidence: no file with records was found in "
                + ", ".join(terminal_safe(ingest.path_text(p)) for p in paths),
                style="yellow",
            )
        )
        failed = True
    if failed:
        raise typer.Exit(EXIT_ERROR)


def _progress() -> Progress:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        # The description is a file name (hostile): shown as text, never parsed as Rich markup.
        TextColumn("{task.description}", style="bold", markup=False),
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
    # The store path on its own line, not as the table's title: a title wraps at the table's
    # width and would fold a long path mid-name (and a title string is parsed as Rich markup).
    console.print(Text("Ingested into ") + t(db_path, None))
    table = Table()
    for column in ("source", "files", "records", "loaded", "rejected", "duplicates", "seconds"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for name, row in result.by_source().items():
        files = f"{row['files']}" + (f" ({row['skipped']} already in store)" if row["skipped"] else "")
        table.add_row(
            name,
            files,
            f"{row['read']:,}",
            f"{row['loaded']:,}",
            Text(f"{row['rejected']:,}", style="red" if row["rejected"] else ""),
            f"{row['duplicates']:,}",
            f"{row['seconds']:.2f}",
        )
    console.print(table)
    for f in result.files:
        if f.note and not f.already_ingested:
            console.print(Text("  note: ", style="yellow") + t(f.path, None) + Text(": ") + t(f.note, 300))
    if result.ignored:
        console.print(
            Text(f"  {len(result.ignored)} file(s) skipped as not logs (hidden, or .md .toml .py …): ", style="dim")
            + t(", ".join(p.name for p in result.ignored[:5]) + (" …" if len(result.ignored) > 5 else ""), 300)
        )
    if any(f.rejected for f in result.files):
        console.print(Text('  rejected records: nhiaudit sql "SELECT path, line, reason FROM rejected"', style="dim"))


@app.command("sources")
def sources_cmd() -> None:
    """List what can be ingested and how each source is detected."""
    table = Table(title="Sources (detection order)", title_justify="left", show_lines=True)
    table.add_column("source", style="bold")
    table.add_column("reads")
    table.add_column("detected by")
    from nhiaudit.sources import SOURCES

    for name, module in SOURCES.items():
        table.add_row(name, Text(module.READS), Text(module.DETECTION))
    console.print(table)


@app.command("sql")
def sql_cmd(
    statement: Annotated[str, typer.Argument(help="One SQL statement (read-only).")],
    db: DbOption = None,
    policy: PolicyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print rows as CSV.")] = False,
    memory_limit: MemoryOption = DEFAULT_MEMORY_LIMIT,
    lake: LakeOption = None,
) -> None:
    """Run read-only SQL against the store (chains and findings current with the policy)."""
    with errors(), _open(db, lake, policy, memory_limit, require_evidence=False) as audit:
        _say_policy(audit)
        columns, rows = audit.sql(statement)
    if as_json:
        sys.stdout.write(query.to_json(columns, rows))
    elif as_csv:
        sys.stdout.write(query.to_csv(columns, rows))
    else:
        table = Table()
        for column in columns:
            table.add_column(t(column))  # a PIVOT makes column names out of log values
        for row in rows:
            table.add_row(*(t(v) for v in row))
        console.print(table)
        console.print(Text(f"{len(rows)} row(s)", style="dim"))


@app.command("schema")
def schema_cmd(
    table_name: Annotated[
        str | None, typer.Argument(metavar="[TABLE]", help="A table or view: list its columns.", show_default=False)
    ] = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables and columns as JSON.")] = False,
    memory_limit: MemoryOption = DEFAULT_MEMORY_LIMIT,
) -> None:
    """The store's tables and views with what they hold; with TABLE, its columns, types and meaning."""
    from nhiaudit import tables

    with errors(), session.open_audit(db, policy, memory_limit, require_evidence=False) as audit:
        _say_policy(audit)
        listed = tables.catalog(audit.con, table_name)
    if as_json:
        from nhiaudit.reports import json_

        sys.stdout.write(json_.dumps(listed if table_name is None else listed[0], indent=2) + "\n")
        return
    if table_name is None:
        overview = Table(title="Tables (nhiaudit schema TABLE for its columns)", title_justify="left")
        for column in ("table", "columns", "one row is"):
            overview.add_column(column, overflow="fold")
        for entry in listed:
            overview.add_row(entry["table"], str(len(entry["columns"])), t(entry["description"] or "-", None))
        console.print(overview)
        return
    entry = listed[0]
    columns = Table(title=f"{entry['table']}: {entry['description'] or ''}", title_justify="left")
    for column in ("column", "type", "meaning"):
        columns.add_column(column, overflow="fold")
    for c in entry["columns"]:
        columns.add_row(c["column"], c["type"], t(c["description"] or "-", None))
    console.print(columns)


def _open(
    db: Path | None, lake: Path | None, policy: Path | None, memory_limit: str, **options: bool
) -> session.AuditSession:
    """The audit session of ``--db`` (a store) or ``--lake`` (an exported Parquet lake)."""
    if lake is None:
        return session.open_audit(db, policy, memory_limit, **options)
    if db is not None:
        raise NhiauditError("--lake and --db: give one of them (the lake is audited instead of a store).")
    return session.open_lake(lake, policy, memory_limit, **options)


def _say_policy(audit: session.AuditSession) -> None:
    """Every audit command names the policy it used (on stderr: stdout may be a JSON document)."""
    err_console.print(t(audit.policy_note, None), style="dim")


STATUS_STYLE = {"found": "green", "missing": "red", "conflict": "bold red", "not_required": "dim"}
VERDICT_STYLE = {"approved": "bold green", "unapproved": "bold red", "unknown": "bold yellow"}
SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


@app.command("trace")
def trace_cmd(
    action_id: Annotated[
        str | None, typer.Argument(help="Event id, bare or as source:event_id.", show_default=False)
    ] = None,
    task: Annotated[str | None, typer.Option("--task", metavar="TASK", help="List the actions of this task.")] = None,
    credential: Annotated[
        str | None,
        typer.Option(
            "--credential", metavar="CREDENTIAL", help="List the actions of this credential (or its children)."
        ),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="AGENT", help="List the actions of this agent.")
    ] = None,
    db: DbOption = None,
    policy: PolicyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the chain as one JSON object.")] = False,
    memory_limit: MemoryOption = DEFAULT_MEMORY_LIMIT,
    lake: LakeOption = None,
) -> None:
    """One action's authorization chain with evidence per link; or the actions of a task, credential or agent."""
    with errors(), _open(db, lake, policy, memory_limit) as audit:
        _say_policy(audit)
        if action_id is None:
            listed = audit.actions_of(task=task, credential=credential, agent=agent)
        elif task or credential or agent:
            raise NhiauditError("trace: give an action id or one of --task, --credential, --agent, not both.")
        else:
            traced = audit.trace(action_id)
    if action_id is None:
        _print_actions(listed, as_json)
        return
    if as_json:
        from nhiaudit.reports import json_

        sys.stdout.write(json_.render_trace(traced))
    elif traced.action is None:
        event = traced.event
        console.print(
            Text(
                f"{terminal_safe(event['source'])}:{terminal_safe(event['event_id'])} is not an "
                f"audited action: {terminal_safe(traced.not_audited_because)}.",
                style="yellow",
            )
        )
    else:
        console.print(_tree(traced.action, list(traced.findings)))


def _print_actions(listed: list[dict], as_json: bool) -> None:
    if as_json:
        from nhiaudit.reports import json_

        sys.stdout.write(
            json_.dumps([{**row, "occurred_at": trace.iso(row["occurred_at"])} for row in listed], indent=2) + "\n"
        )
        return
    table = Table(title=f"{len(listed)} audited action(s): trace one with `nhiaudit trace ID`", title_justify="left")
    for column in ("action id", "time", "action", "verdict", "findings"):
        table.add_column(column, overflow="fold")
    for row in listed:
        table.add_row(
            t(row["action_id"], None),
            t(trace.iso(row["occurred_at"]) or "-"),
            t(" ".join(x for x in (row["action"], row["resource"]) if x), None),
            Text(row["verdict"], style=VERDICT_STYLE.get(row["verdict"], "")),
            Text(f"{row['findings']} (worst {row['worst']})", style=SEVERITY_STYLE[row["worst"]])
            if row["findings"]
            else Text("0", style="green"),
        )
    console.print(table)


def shown_path(path: str) -> str:
    """An evidence path as the terminal shows it: relative to the current folder when the file is
    under it (a path stored relative is relative to where it was ingested, and is shown as stored)."""
    stored = Path(path)
    if stored.is_absolute():
        try:
            return str(stored.relative_to(Path.cwd()))
        except ValueError:
            return path
    return path


def _evidence_text(link) -> Text:
    ev = link.evidence
    if ev is None:
        return Text("  (no evidence)", style="dim")
    return Text(
        f"  [{terminal_safe(ev.source)} {terminal_safe(shown_path(ev.file), None)}:{ev.line} "
        f"record {ev.record_index} id {terminal_safe(ev.event_id, None)}]",
        style="dim",
    )


def _tree(action: AuditedAction, findings: list[Finding]) -> Tree:
    root = Tree(Text("verdict: ") + Text(action.verdict, style=VERDICT_STYLE.get(action.verdict, "")))
    # Two branches: the credential chain (action <- credential <- issuance <- parents) and the
    # authorization (task <- approval <- the deciding denial <- authority).
    chain = authorization = root
    for link in action.links:
        label = (
            Text(f"{link.kind}", style="bold")
            + Text(" ")
            + Text(link.status, style=STATUS_STYLE.get(link.status, ""))
            + Text("  ")
            + t(link.id or "-", None)
            + Text("\n")
            + t(link.label, 400)
            + _evidence_text(link)
        )
        if link.kind in ("span", "task", "approval", "denial", "authority"):
            authorization = authorization.add(label)
        else:
            chain = chain.add(label)
    if findings:
        branch = root.add(Text(f"findings ({len(findings)})", style="bold"))
        for f in findings:
            branch.add(
                Text(f.severity, style=SEVERITY_STYLE[f.severity])
                + Text(f"  {f.rule}  ")
                + t(f.message, 400)
                + (Text("  (waived)", style="dim") if f.waived else Text(""))
            )
    else:
        root.add(Text("findings: none", style="green"))
    return root


@app.command("report")
def report_cmd(
    db: DbOption = None,
    policy: PolicyOption = None,
    json_out: Annotated[
        str | None, typer.Option("--json", metavar="FILE", help="Write the JSON report ('-' = stdout).")
    ] = None,
    sarif_out: Annotated[str | None, typer.Option("--sarif", metavar="FILE", help="Write SARIF 2.1.0.")] = None,
    junit_out: Annotated[str | None, typer.Option("--junit", metavar="FILE", help="Write JUnit XML.")] = None,
    markdown_out: Annotated[str | None, typer.Option("--markdown", metavar="FILE", help="Write Markdown.")] = None,
    ocsf_out: Annotated[
        str | None, typer.Option("--ocsf", metavar="FILE", help="Write OCSF Detection Findings (JSON lines).")
    ] = None,
    html_out: Annotated[
        str | None, typer.Option("--html", metavar="FILE", help="Write a self-contained HTML report.")
    ] = None,
    csv_out: Annotated[
        str | None, typer.Option("--csv", metavar="FILE", help="Write the findings as CSV (formula-safe).")
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", metavar="DIR", help="Write every format into DIR with stable names (nhiaudit.sarif, …)."
        ),
    ] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            metavar="SEVERITY",
            help="Exit 1 when a finding is at or above this severity: " + "|".join(FAIL_ON) + " (any case).",
        ),
    ] = "high",
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", metavar="FILE", help="A previous JSON report: only new findings count toward --fail-on."
        ),
    ] = None,
    rules_dir: Annotated[
        list[Path] | None, typer.Option("--rules", metavar="DIR", help="Extra rule folder (repeatable).")
    ] = None,
    severity: Annotated[
        list[str] | None,
        typer.Option("--severity", metavar="SEVERITY", help="Keep findings of this severity (repeatable)."),
    ] = None,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", metavar="RULE", help="Keep findings of this rule (repeatable).")
    ] = None,
    exclude_rule: Annotated[
        list[str] | None,
        typer.Option("--exclude-rule", metavar="RULE", help="Drop findings of this rule (repeatable)."),
    ] = None,
    compliance: Annotated[
        str | None,
        typer.Option(
            "--compliance",
            metavar="FRAMEWORK",
            help="Pass/fail per control of a framework: " + ", ".join(FRAMEWORKS) + ".",
        ),
    ] = None,
    html_max_chains: Annotated[
        int, typer.Option("--html-max-chains", metavar="N", min=0, help="Chains the HTML report draws in full.")
    ] = 200,
    html_max_findings: Annotated[
        int, typer.Option("--html-max-findings", metavar="N", min=0, help="Findings the HTML report lists.")
    ] = 2_000,
    markdown_max: Annotated[
        int,
        typer.Option(
            "--markdown-max",
            metavar="N",
            min=0,
            help="Findings the Markdown comment lists; it points to the full report for the rest.",
        ),
    ] = 50,
    memory_limit: MemoryOption = DEFAULT_MEMORY_LIMIT,
    sarif_category: Annotated[
        str,
        typer.Option(
            "--sarif-category", metavar="TEXT", help="SARIF automationDetails.id (one per analysis in GitHub)."
        ),
    ] = "nhiaudit",
    sarif_max_results: Annotated[
        int,
        typer.Option(
            "--sarif-max-results",
            metavar="N",
            min=100,
            max=25_000,
            help="Past this many findings, SARIF aggregates them (GitHub shows 5,000 results a run, accepts 25,000).",
        ),
    ] = 5_000,
    source_root: Annotated[
        Path | None,
        typer.Option(
            "--source-root",
            metavar="DIR",
            help="SARIF artifact URIs are relative to this folder (default: the working folder when every "
            "evidence file is under it, else their common folder).",
            show_default=False,
        ),
    ] = None,
    lake: LakeOption = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            metavar="ENGINE",
            help="Where correlation and the rules run: duckdb (the store) or spark (Spark local, or --spark-remote).",
        ),
    ] = "duckdb",
    spark_remote: Annotated[
        str | None,
        typer.Option(
            "--spark-remote",
            metavar="URL",
            help="With --engine spark: a Spark Connect URL (sc://host:15002). Needs the spark extra "
            "(docs/scale-out.md).",
        ),
    ] = None,
) -> None:
    """Evaluate the rules; print a summary and write reports. Exit 1 on findings at or above --fail-on."""
    outputs = {
        "json": json_out,
        "sarif": sarif_out,
        "junit": junit_out,
        "markdown": markdown_out,
        "ocsf": ocsf_out,
        "html": html_out,
        "csv": csv_out,
    }
    with errors():
        from nhiaudit.reports import FILE_NAMES, WRITERS, sarif, write

        if output_dir is not None:
            try:
                output_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NhiauditError(f"{output_dir}: cannot create the output folder ({exc.strerror}).") from None
            outputs = {fmt: target or str(output_dir / FILE_NAMES[fmt]) for fmt, target in outputs.items()}
        report_options = dict(
            fail_on=fail_on,
            baseline_path=baseline,
            generated_at=_generated_at(),
            severities=severity or (),
            only_rules=rule or (),
            exclude_rules=exclude_rule or (),
        )
        # A report over a store streams its actions from it: the session stays open until every
        # format is written.
        with ExitStack() as stack:
            if engine.strip().lower() != "duckdb" or spark_remote:
                if lake is not None:
                    raise NhiauditError("--lake and --engine spark: the Spark engine reads the store (--db).")
                result = _spark_report(engine, spark_remote, db, policy, list(rules_dir or []), report_options)
            else:
                audit = stack.enter_context(_open(db, lake, policy, memory_limit))
                _say_policy(audit)
                result = audit.report(extra_rule_dirs=list(rules_dir or []), **report_options)
            controls = report.compliance_result(result, compliance) if compliance else None
            options: dict[str, dict] = {
                "html": {"max_chains": html_max_chains, "max_findings": html_max_findings},
                "markdown": {"max_rows": markdown_max, "full_report": _full_report(outputs)},
                "sarif": {
                    "max_results": sarif_max_results,
                    "category": sarif_category,
                    "source_root": str(source_root.resolve()) if source_root else None,
                    "cwd": str(Path.cwd()),
                },
            }
            if controls is not None:  # every format shows pass/fail per control
                for fmt in WRITERS:
                    options.setdefault(fmt, {})["compliance"] = controls
            for fmt, target in outputs.items():
                if target:
                    _write_report(fmt, target, lambda out, fmt=fmt: write(fmt, result, out, **options.get(fmt, {})))
    to_stdout = any(target == "-" for target in outputs.values())
    out = Console(stderr=True) if to_stdout else console
    _print_summary(result, out)
    if controls is not None:
        _print_compliance(controls, out)
    if outputs["sarif"] and (note := sarif.aggregation_note(result, sarif_max_results)):
        out.print(Text(note, style="yellow"))
    if report.failing(result):
        raise typer.Exit(EXIT_FINDINGS)


def _write_report(fmt: str, target: str, write: Callable[[TextIO], None]) -> None:
    """One format to its file (or stdout for ``-``), one at a time so only one is ever in memory, and
    streamed where the format allows. A file appears whole or not at all: it is written next to the
    target and renamed over it."""
    if target == "-":
        write(sys.stdout)
        return
    path = Path(target)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            write(out)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise NhiauditError(f"{target}: cannot write the {fmt} report ({exc.strerror}).") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _full_report(outputs: dict[str, str | None]) -> str | None:
    """The file a capped Markdown comment points to: the fullest report written in the same run."""
    return next((outputs[fmt] for fmt in ("html", "json", "sarif", "csv") if outputs[fmt] not in (None, "-")), None)


def _print_compliance(result: dict, out: Console) -> None:
    title, controls = result["title"], result["controls"]
    failed = result["failed"]
    table = Table(title=f"{title}: {failed} of {len(controls)} controls fail", title_justify="left")
    for column in ("control", "status", "findings", "rules"):
        table.add_column(column, overflow="fold")
    for c in controls:
        table.add_row(
            t(c["control"], None),
            Text(c["status"].upper(), style="bold red" if c["status"] == "fail" else "green"),
            f"{c['failing']} failing / {c['findings']}" if c["findings"] else "0",
            t(", ".join(c["rules"]), None),
        )
    out.print(table)


def _generated_at() -> datetime | None:
    """SOURCE_DATE_EPOCH pins the one wall-clock value, for byte-identical reports in CI."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch and epoch.isdigit() else None


def _print_summary(result, out: Console) -> None:
    summary = result.summary
    verdicts = summary["verdicts"]
    out.print(
        Text(f"{summary['actions_audited']} audited actions: ", style="bold")
        + Text(f"{verdicts['approved']} approved", style="green")
        + Text(", ")
        + Text(f"{verdicts['unapproved']} unapproved", style="red")
        + Text(", ")
        + Text(f"{verdicts['unknown']} unknown", style="yellow")
    )
    table = Table(title="Findings by rule", title_justify="left")
    for column in ("severity", "rule", "findings", "waived"):
        table.add_column(column, justify="right" if column in ("findings", "waived") else "left", overflow="fold")
    rows: dict[str, list] = {}
    for f in result.findings:
        row = rows.setdefault(f.rule, [f.severity, 0, 0])
        row[2 if f.waived else 1] += 1
    for rule_id, (severity, count, waived) in sorted(rows.items(), key=lambda kv: (-SEVERITIES.index(kv[1][0]), kv[0])):
        table.add_row(Text(severity, style=SEVERITY_STYLE[severity]), t(rule_id), str(count), str(waived or ""))
    out.print(table)
    worst = report.worst_actions(result)
    if worst:
        table = Table(title="Worst actions (trace them with `nhiaudit trace ID`)", title_justify="left")
        table.add_column("action id", overflow="fold")  # whole: it is what `trace` takes
        table.add_column("action", overflow="fold")
        table.add_column("worst", overflow="fold")
        table.add_column("findings", justify="right", overflow="fold")
        for key, action, severity, count in worst:
            table.add_row(t(key, None), t(action, None), Text(severity, style=SEVERITY_STYLE[severity]), str(count))
        out.print(table)
    waived = [f for f in result.findings if f.waived and f.waiver]
    if waived:
        table = Table(title=f"Waived ({len(waived)}): not counted toward --fail-on", title_justify="left")
        for column in ("rule", "action id", "reason", "owner", "expires"):
            table.add_column(column, overflow="fold")
        for f in waived:
            table.add_row(
                f.rule,
                t(f"{f.source}:{f.event_id}", None),
                t(f.waiver.reason, 200),
                t(f.waiver.owner, None),
                t(f.waiver.expires, None),
            )
        out.print(table)
    for waiver in result.expired_waivers:
        out.print(
            Text("EXPIRED WAIVER: ", style="bold white on red")
            + t(
                f"{waiver.rule} for {', '.join(f'{k}={v}' for k, v in sorted(waiver.match.items()))} "
                f"(owner {waiver.owner}) expired {waiver.expires}; "
                "its findings are no longer suppressed.",
                400,
            )
        )
    if result.baseline_path:
        out.print(Text(f"baseline: {summary['new']} new, {summary['fixed']} fixed"))
    status = "FAIL" if summary["failing"] else "PASS"
    out.print(
        Text(
            f"{status}: {summary['failing']} finding(s) at or above {result.fail_on}"
            + (" (new only)" if result.baseline_path else ""),
            style="bold red" if summary["failing"] else "bold green",
        )
    )


@app.command("export")
def export_cmd(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="The lake's folder (new, empty, or an earlier export).")
    ],
    db: DbOption = None,
    policy: PolicyOption = None,
    derived: Annotated[
        bool,
        typer.Option("--derived", help="Export the derived tables too (chains, findings, …), current with the policy."),
    ] = False,
    memory_limit: MemoryOption = DEFAULT_MEMORY_LIMIT,
) -> None:
    """Write the store as Hive-partitioned Parquet (events by source and day) with a manifest.

    Again into the same DIR, only the partitions whose events changed are rewritten.

    Audit the lake with `report`, `trace` or `sql --lake DIR`; Spark, polars and pyarrow read it as is.
    """
    from nhiaudit import export

    with errors(), session.open_audit(db, policy, memory_limit, refresh=derived) as audit:
        if derived:
            _say_policy(audit)
        store.set_memory_limit(audit.con, memory_limit)  # the sort of each partition spills beyond it
        with _export_progress() as progress:
            task = progress.add_task("events", total=None)

            def on_step(what: str, done: int, total: int) -> None:
                progress.update(task, description=what, completed=done, total=total)

            result = export.export(audit.con, folder, derived=derived, progress=on_step)
    _print_export_summary(result)


def _export_progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _print_export_summary(result: export.ExportResult) -> None:
    console.print(Text("Exported to ") + t(result.folder, None))
    table = Table()
    for column in ("table", "rows", "files", "written", "MB"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, row in result.tables.items():
        table.add_row(name, f"{row.rows:,}", f"{row.files:,}", f"{row.written:,}", f"{row.bytes / 1e6:,.2f}")
    console.print(table)
    console.print(
        f"{result.partitions_written:,} of {result.partitions:,} event partitions written "
        f"({result.partitions - result.partitions_written:,} unchanged), {result.files_written:,} of "
        f"{result.files:,} files, {result.bytes_written / 1e6:,.1f} of {result.bytes / 1e6:,.1f} MB; "
        f"{result.files_removed:,} stale file(s) removed; {result.seconds:.2f} s"
    )


def _spark_report(
    engine: str, remote: str | None, db: Path | None, policy: Path | None, rule_dirs: list[Path], options: dict
) -> report.Report:
    """``report --engine spark``: correlation and rules on Spark, the same Report for the writers."""
    if engine.strip().lower() != "spark":
        raise NhiauditError(f"--engine: unknown engine '{engine}'. Use duckdb or spark.")
    from nhiaudit import spark_runner

    err_console.print(Text("engine: Spark " + (f"Connect at {remote}" if remote else "local[2]")), style="dim")
    result, note = spark_runner.spark_report(db, policy, remote=remote, extra_rule_dirs=rule_dirs, **options)
    err_console.print(t(note, None), style="dim")
    return result


@app.command("rules")
def rules_cmd(
    lint: Annotated[
        list[Path] | None,
        typer.Option(
            "--lint", metavar="DIR", help="Validate the rule files of DIR (repeatable) and report every problem."
        ),
    ] = None,
    rules_dir: Annotated[
        list[Path] | None, typer.Option("--rules", metavar="DIR", help="Extra rule folder (repeatable).")
    ] = None,
    portable: Annotated[
        bool,
        typer.Option(
            "--portable",
            help="With --lint: also reject SQL outside the portable subset Spark runs (docs/scale-out.md).",
        ),
    ] = False,
    db: DbOption = None,
    policy: PolicyOption = None,
) -> None:
    """List the rules with severity and framework tags, or lint rule folders.

    With a store (``--db``, else the default one when it exists), lint also binds each rule's query
    against its derived tables, so a wrong column name is caught before a report run.
    """
    if lint is not None:
        with errors():
            problems = _lint(list(lint), db, policy)
            if portable:
                problems += _lint_portable(list(lint))
            if problems:
                raise RuleError(problems)
        console.print(Text("rules: no problems", style="green"))
        return
    with errors():
        loaded = rules.load_rules(list(rules_dir or []))
    table = Table(title=f"{len(loaded)} rules", title_justify="left", show_lines=True)
    for column in ("id", "severity", "title", "frameworks"):
        table.add_column(column)
    for info, _ in sorted(loaded, key=lambda r: (-SEVERITIES.index(r[0].severity), r[0].id)):
        table.add_row(
            t(info.id, None),
            Text(info.severity, style=SEVERITY_STYLE[info.severity]),
            t(info.title),
            t(", ".join(info.frameworks), None),
        )
    console.print(table)


def _lint(dirs: list[Path], db: Path | None, policy: Path | None) -> list[str]:
    if not store.resolve_db_path(db).exists():
        return rules.lint(dirs)
    with session.open_audit(db, policy, require_evidence=False, refresh=False) as audit:
        return rules.lint(dirs, con=audit.con if audit.has_chains() else None)


def _lint_portable(dirs: list[Path]) -> list[str]:
    """The portable-subset problems of the built-in rules and every rule file in ``dirs``."""
    from nhiaudit import portable

    given = sorted(p for d in dirs if d.is_dir() for p in d.glob("*.sql"))
    return portable.lint_paths([*rules.builtin_rule_files(), *given])


@app.command("init")
def init_cmd(
    db: DbOption = None,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="Where to write the policy.")] = Path(
        "nhiaudit.toml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing policy file.")] = False,
) -> None:
    """Write a starter policy from the store: likely humans and brokers to confirm, principals seen."""
    from nhiaudit.policy import write_starter_policy

    with errors():
        written = write_starter_policy(db, output, force)
    console.print(Text("wrote ") + t(str(written), None) + Text(": confirm [identities] before the next report"))


# Commands that never hand DuckDB or pyarrow a pandas value, and whose start-up is the user's wait.
_PANDAS_FREE = frozenset({"trace"})


def run() -> None:
    """The ``nhiaudit`` executable. For a command in ``_PANDAS_FREE``, pandas is marked absent for
    the process unless something imported it already: DuckDB's Python client imports pandas, when it
    is installed, the first time a statement has parameters (to recognise pandas values among them),
    which costs more than a whole trace on a million events (0.4 s and up)."""
    if len(sys.argv) > 1 and sys.argv[1] in _PANDAS_FREE:
        sys.modules.setdefault("pandas", None)  # type: ignore[arg-type]  # None: `import pandas` raises
    app(prog_name="nhiaudit")
