"""The `lead-finder` shell command. Each command is a few lines over LeadFinder; errors become one
plain sentence on stderr (never a traceback for a user mistake)."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .config import (
    Secret,
    config_file_path,
    delete_keyring_key,
    load_settings,
    set_keyring_key,
)
from .errors import LeadFinderError
from .models import Mode, Result

F = TypeVar("F", bound=Callable[..., Any])

MODE = click.option(
    "--mode", default="PROFESSIONAL", show_default=True,
    help="PROFESSIONAL (work email, $0.05) or PERSONAL (Gmail etc., $0.20).",
)
_COLUMN_OPTIONS = ("name", "company", "domain", "linkedin", "first-name", "last-name", "email")


def _finder(ctx: click.Context, **overrides: Any) -> Any:
    from .finder import LeadFinder

    opts = ctx.obj or {}
    return LeadFinder(
        base_url=opts.get("base_url"),
        cache_path=opts.get("cache"),
        budget=overrides.get("budget"),
    )


def _columns(func: F) -> F:
    for option in reversed(_COLUMN_OPTIONS):
        func = click.option(f"--{option}", default=None, metavar="COLUMN",
                            help=f"The column holding the {option.replace('-', ' ')}.")(func)
    return func


def _mapping_from(kwargs: dict[str, Any]) -> dict[str, str | None]:
    return {role.replace("-", "_"): kwargs.pop(role.replace("-", "_"), None)
            for role in _COLUMN_OPTIONS}


def _leads(count: int) -> str:
    return f"{count:,} lead" if count == 1 else f"{count:,} leads"


def _money(cents: int | None) -> str:
    return "unlimited" if cents is None else f"${cents / 100:,.2f}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lead-finder")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The cache file (default: LEAD_FINDER_CACHE, else your user data folder).")
@click.option("--base-url", default=None,
              help="The API address (default: LEAD_FINDER_BASE_URL, else Sixtyfour's).")
@click.pass_context
def cli(ctx: click.Context, cache: Path | None, base_url: str | None) -> None:
    """Find email addresses for sales leads, without paying twice.

    The API key comes from SIXTYFOUR_API_KEY, the OS keyring (`lead-finder config set-key`) or
    the config file; it is never taken on the command line.
    """
    ctx.obj = {"cache": cache, "base_url": base_url}


@cli.command()
@click.argument("name")
@click.argument("company", required=False)
@click.option("--domain", default=None, help="The company's domain or website.")
@click.option("--linkedin", default=None, help="The person's LinkedIn URL.")
@MODE
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.pass_context
def find(ctx: click.Context, name: str, company: str | None, domain: str | None,
         linkedin: str | None, mode: str, as_json: bool) -> None:
    """Find the email of one person: lead-finder find "Jane Doe" "Acme Inc."."""
    with _finder(ctx) as finder:
        result = finder.find(name, company, domain=domain, linkedin=linkedin, mode=mode)
    if as_json:
        click.echo(json.dumps(_result_json(result), indent=2, ensure_ascii=False))
        return
    if result.error:
        raise click.ClickException(result.error)
    if result.email:
        click.echo(f"{result.email}\t{result.status}\t{result.best.type if result.best else ''}")
    else:
        click.echo(f"not found\t{result.status}")
        sys.exit(3)


def _result_json(result: Result) -> dict[str, Any]:
    return {
        "lead": dict(result.lead),
        "email": result.email,
        "status": str(result.status),
        "emails": [e.to_entry() for e in result.emails],
        "personal_emails": [e.to_entry() for e in result.personal_emails],
        "cost_cents": result.cost_cents,
        "source": str(result.source),
        "error": result.error,
    }


@cli.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the results (.csv or .xlsx).")
@_columns
@MODE
@click.option("--budget", default=None, help="Stop spending above this many dollars in this run.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before spending.")
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
@click.pass_context
def enrich(ctx: click.Context, /, source: Path, output: Path, mode: str, budget: str | None,
           yes: bool, no_progress: bool, **columns: Any) -> None:
    """Add email columns to a CSV or XLSX list of leads (original columns are kept)."""
    from .frames import enrich_mapped, frame_leads, lead_columns
    from .tables import read_table, write_table

    mode_ = Mode.parse(mode)
    df = read_table(source)
    mapping = lead_columns([str(c) for c in df.columns], _mapping_from(columns))
    click.echo("Columns: " + ", ".join(f"{role}={col!r}" for role, col in mapping.items()),
               err=True)
    with _finder(ctx, budget=budget) as finder:
        estimate = finder.estimate(frame_leads(df, mapping), mode=mode_)
        click.echo(f"Estimate: {estimate.describe()}", err=True)
        if estimate.cost_cents > finder.settings.confirm_above_cents and not yes:
            click.confirm(f"This may cost up to ${estimate.cost_cents / 100:,.2f}. Continue?",
                          abort=True, err=True)
        out = enrich_mapped(df, mapping, mode=mode_, finder=finder, progress=not no_progress)
        spent = finder.store.spent_in_run(finder.run_id)
    write_table(out, output)
    counts = Counter(out["email_status"])
    click.echo(
        f"Wrote {output}: {counts.get('OK', 0):,} found · {counts.get('UNKNOWN', 0):,} unknown · "
        f"{counts.get('NOT_FOUND', 0):,} not found · {counts.get('ERROR', 0):,} errors · "
        f"cost {_money(spent)}",
        err=True,
    )


@cli.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_columns
@MODE
@click.pass_context
def estimate(ctx: click.Context, /, source: Path, mode: str, **columns: Any) -> None:
    """Show what enriching a file would cost (duplicates and cached leads are free)."""
    from .frames import frame_leads, lead_columns
    from .tables import read_table

    df = read_table(source)
    mapping = lead_columns([str(c) for c in df.columns], _mapping_from(columns))
    with _finder(ctx) as finder:
        click.echo(finder.estimate(frame_leads(df, mapping), mode=mode).describe())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8064, show_default=True, type=int)
@click.option("--backend", default="directory", show_default=True,
              type=click.Choice(["directory", "local", "hosted"]),
              help="Where answers come from: directory (known people from a CSV; demo and "
                   "tests), local (the built-in engine), hosted (a team gateway to the hosted "
                   "API: only this server holds SIXTYFOUR_API_KEY; one shared cache and budget).")
@click.option("--directory", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="CSV of known people for the directory backend.")
@click.option("--jobs-path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file for async job records (kept across restarts).")
def serve(host: str, port: int, backend: str, directory: Path | None,
          jobs_path: Path | None) -> None:
    """Run a Sixtyfour-compatible API server (keys from LEAD_FINDER_SERVER_KEYS)."""
    from .server import run

    run(host=host, port=port, backend=backend, directory=directory, jobs_path=jobs_path)


@cli.command()
@click.pass_context
def balance(ctx: click.Context) -> None:
    """Show the API account's credit balance."""
    with _finder(ctx) as finder:
        credits = finder._get_client().check_balance()
    click.echo(f"{credits:,.2f} credits")


@cli.group()
def jobs() -> None:
    """Bulk jobs recorded in the ledger."""


@jobs.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also show completed jobs.")
@click.pass_context
def jobs_list(ctx: click.Context, show_all: bool) -> None:
    """List open, ambiguous and failed jobs with what they may have cost."""
    from .store import Store

    settings = load_settings(cache_path=(ctx.obj or {}).get("cache"), use_keyring=False)
    with Store(settings.cache_path) as store:
        states = None if show_all else {"intent", "submitted", "ambiguous", "failed", "expired"}
        rows = store.jobs(states)
    if not rows:
        click.echo("No jobs to show.")
        return
    for job in rows:
        cost = job.charge_cents if job.charge_cents is not None else job.estimated_cents
        label = "cost" if job.charge_cents is not None else "may cost"
        click.echo(
            f"{job.id[:12]}  {job.state:<10} {_leads(len(job.keys)):>10}  {job.mode:<12} "
            f"{label} {_money(cost)}  task={job.task_id or '-'}  {job.error or ''}".rstrip()
        )


@jobs.command("release")
@click.argument("job_id")
@click.pass_context
def jobs_release(ctx: click.Context, job_id: str) -> None:
    """Let the leads of an ambiguous job be looked up (and paid for) again.

    An ambiguous job's request went out but its answer was lost, so it may have been charged.
    lead_finder never buys those leads again on its own; this says you accept the risk.
    """
    from .store import Store

    settings = load_settings(cache_path=(ctx.obj or {}).get("cache"), use_keyring=False)
    with Store(settings.cache_path) as store:
        matches = [j for j in store.jobs({"ambiguous"}) if j.id.startswith(job_id)]
        if len(matches) != 1:
            raise click.ClickException(
                f"No single ambiguous job starts with {job_id!r}: see `lead-finder jobs list`."
            )
        store.mark_failed(matches[0].id, "released by the user: its leads may be bought again")
    click.echo(f"Released {_leads(len(matches[0].keys))}; the next run looks them up again.")


@jobs.command("resume")
@click.pass_context
def jobs_resume(ctx: click.Context) -> None:
    """Finish interrupted jobs by polling them (never by buying again)."""
    with _finder(ctx) as finder:
        done = finder.resume_jobs()
    if not done:
        click.echo("No interrupted jobs.")
    for job in done:
        line = f"{job.id[:12]}  {job.state}  {_leads(len(job.keys))}  {job.error or ''}"
        click.echo(line.rstrip())


@cli.group()
def cache() -> None:
    """The local cache of results."""


@cache.command("stats")
@click.pass_context
def cache_stats(ctx: click.Context) -> None:
    """Show what the cache holds."""
    from .store import Store

    settings = load_settings(cache_path=(ctx.obj or {}).get("cache"), use_keyring=False)
    with Store(settings.cache_path) as store:
        stats = store.stats()
    for field in dataclasses.fields(stats):
        click.echo(f"{field.name}: {getattr(stats, field.name)}")


@cache.command("clear")
@click.option("--expired", is_flag=True,
              help="Only remove expired results (and ledger rows of jobs finished 90+ days ago).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.pass_context
def cache_clear(ctx: click.Context, expired: bool, yes: bool) -> None:
    """Remove cached results (paid results will be bought again if asked for)."""
    from .store import Store

    if not expired and not yes:
        click.confirm("Remove every cached result? Looking them up again costs money.",
                      abort=True, err=True)
    settings = load_settings(cache_path=(ctx.obj or {}).get("cache"), use_keyring=False)
    with Store(settings.cache_path) as store:
        removed = store.clear(expired_only=expired)
        jobs = store.purge_finished_jobs() if expired else 0
    click.echo(f"Removed {removed:,} results" + (
        f" and {jobs:,} finished jobs older than 90 days." if expired else "."))


@cli.group()
def config() -> None:
    """Settings and the API key."""


@config.command("set-key")
def config_set_key() -> None:
    """Store the API key in the OS keyring (asked for without echo)."""
    key = click.prompt("Sixtyfour API key", hide_input=True).strip()
    if not key:
        raise click.ClickException("No key given.")
    set_keyring_key(key)
    click.echo(f"Stored {Secret(key).masked} in the OS keyring.")


@config.command("delete-key")
def config_delete_key() -> None:
    """Remove the API key from the OS keyring."""
    click.echo("Removed." if delete_keyring_key() else "There was no key in the keyring.")


@config.command("enable-smtp-probe")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
def config_enable_smtp_probe(yes: bool) -> None:
    """Let the built-in engine check addresses with the domain's mail server (port 25)."""
    from .engine import SMTP_PROBE_WARNING, enable_smtp_probe

    click.echo(SMTP_PROBE_WARNING, err=True)
    if not yes:
        click.confirm("Enable SMTP probing?", abort=True, err=True)
    click.echo(f"SMTP probing enabled (consent recorded in {enable_smtp_probe()}).")


@config.command("disable-smtp-probe")
def config_disable_smtp_probe() -> None:
    """Stop the built-in engine from talking to mail servers."""
    from .engine import disable_smtp_probe

    disable_smtp_probe()
    click.echo("SMTP probing disabled.")


@cli.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check settings, the key (masked), the cache, the backend and the budget."""
    from .finder import LeadFinder

    opts = ctx.obj or {}
    settings = load_settings(cache_path=opts.get("cache"), base_url=opts.get("base_url"))
    src = settings.sources
    click.echo(f"lead-finder {__version__}")
    click.echo(f"config file: {config_file_path()}")
    key = settings.api_key.masked if settings.api_key else "not set"
    click.echo(f"API key: {key} ({src.get('api_key', 'nowhere')})")
    click.echo(f"backend: {settings.resolved_backend}")
    click.echo(f"base URL: {settings.base_url or 'https://api.sixtyfour.ai'}")
    problems = 0
    with LeadFinder(settings=settings) as finder:
        click.echo(f"cache: {finder.store.path}")
        click.echo(f"budget: run {_money(settings.budget_cents)}, "
                   f"day {_money(settings.daily_budget_cents)}, "
                   f"left {_money(finder.budget_left_cents())}")
        click.echo(f"spent today: {_money(finder.store.spent_today())}")
        if finder.local:
            from .engine import smtp_probe_enabled

            probing = "on" if smtp_probe_enabled() else (
                "off (addresses are unverified; `lead-finder config enable-smtp-probe`)")
            click.echo(f"built-in engine: SMTP probing {probing}")
        else:
            try:
                credits = finder._get_client().check_balance()
                click.echo(f"backend reachable: yes ({credits:,.2f} credits)")
            except LeadFinderError as exc:
                problems += 1
                click.echo(f"backend reachable: no — {exc}")
    if problems:
        sys.exit(1)


def _register_excel() -> None:
    from .excel.server import excel as excel_commands

    cli.add_command(excel_commands)


_register_excel()


def _friendly(func: Callable[[], Any]) -> Callable[[], Any]:
    @functools.wraps(func)
    def wrapper() -> Any:
        try:
            return func()
        except LeadFinderError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Jobs already sent finish on the server; collect them with "
                       "`lead-finder jobs resume`.", err=True)
            sys.exit(130)

    return wrapper


@_friendly
def main() -> Any:
    """Entry point of the `lead-finder` command."""
    return cli.main(standalone_mode=True)

