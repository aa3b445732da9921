"""The ``gankit`` command line: parses flags, calls the Python API, prints with rich.

torch is imported only inside the commands that need it, so ``gankit --help`` stays instant.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

try:  # newer Typer releases vendor their own copy of click; its exceptions are the ones raised
    from typer import _click as click
except ImportError:  # pragma: no cover - Typer releases that use click itself
    import click

from gankit import __version__
from gankit.errors import GankitError, GankitWarning, shortened
from gankit.config import Setting, settings
from gankit.events import CheckpointWritten, DivergenceDetected, RunFinished, RunStarted, SamplesWritten, StepLogged
from gankit.flags import (
    SECTIONS,
    Flag,
    command,
    options_markdown,
    replace_generated,
    run_flags,
    setting_flag,
    setting_values,
    with_default_texts,
)
from gankit.signals import INTERRUPTED_EXIT_CODE, CommandInterrupted, StoppedAtOnce


# click < 8.2 prints the help itself instead of raising this.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OneLineErrors(TyperGroup):
    """Every error ends as one ``Error: ...`` line and a non-zero exit, never a traceback or a box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from gankit.signals import restore_sigterm, stop_on_sigterm

        previous_sigterm = stop_on_sigterm()  # outside training, SIGTERM stops as Ctrl-C does, cleaning up
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except CommandInterrupted as stop:
            click.echo(f"Interrupted: {_one_line(str(stop))}", err=True)
            code = INTERRUPTED_EXIT_CODE
        except GankitError as error:
            _let_plugin_errors_through(error)
            code = _error(str(error), 1)
        except _NO_ARGS_IS_HELP:
            code = 2  # the help has been printed already
        except click.ClickException as error:
            code = _error(error.format_message(), error.exit_code)
        except typer.Abort:
            code = _error("aborted", 130)
        except Exception as error:
            _let_plugin_errors_through(error)
            # A bug, not bad input: still one line, with a way to see the traceback.
            if os.environ.get("GANKIT_DEBUG"):
                raise
            code = _error(f"unexpected {type(error).__name__}: {error} (set GANKIT_DEBUG=1 for the traceback)", 1)
        finally:
            restore_sigterm(previous_sigterm)
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx):
        # Typer turns a KeyboardInterrupt into a silent exit 130; a command's own handling comes first, and
        # whatever is left still ends as one line (a signal outside training says what it stopped).
        from gankit.signals import Interrupted

        try:
            return super().invoke(ctx)
        except Interrupted as stop:
            raise CommandInterrupted(str(stop)) from None
        except KeyboardInterrupt:
            command = f"gankit {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "gankit"
            raise CommandInterrupted(f"Ctrl-C: {command} stopped") from None


def _let_plugin_errors_through(error: Exception) -> None:
    """Under GANKIT_STRICT_PLUGINS=1 a plugin's error ends in its own traceback (which names the plugin)."""
    from gankit.plugins import blamed_plugin

    if blamed_plugin(error) is not None:
        raise error


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A GankitWarning (e.g. skipped image files) prints as one ``Warning: ...`` line; others as Python prints them."""
    if issubclass(category, GankitWarning):
        click.echo(f"Warning: {_one_line(message)}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def _error(message: str, code: int) -> int:
    click.echo(f"Error: {_one_line(message)}", err=True)
    return code


# Messages echo user input through gankit.errors.quoted; this bounds what slips past it (click's own
# messages, an unexpected exception's text) so that no line runs to megabytes.
LINE_LIMIT = 1000


def _one_line(message: str) -> str:
    return shortened(" ".join(str(message).strip().split()), LINE_LIMIT)


app = typer.Typer(
    cls=OneLineErrors,
    help="Train GANs from plugins: architectures, losses, regularizers and data sources.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: rich's option table truncates long names at 80 columns and shows <bool> on flags.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gankit {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """Train GANs from plugins: architectures, losses, regularizers and data sources."""
    warnings.showwarning = _one_line_warning


# -- gankit run --------------------------------------------------------------------------------------


RUN_ONLY_FLAGS = (
    Flag("resume", Optional[Path], ("--resume",), Setting(
        section="Reliability", metavar="DIR", default_text="none",
        help="Continue the run in DIR from its newest checkpoint; --steps N extends it.",
        details="It trains with the config saved in that checkpoint. An edit of `config.toml` is refused unless it "
                "changes `steps`, `on_divergence` or `keep_checkpoints` (said in one line); a deleted `config.toml` "
                "is written again. Not with `--config` or `--overwrite`.",
    ), is_setting=False),
    Flag("config", Optional[Path], ("--config",), Setting(
        section="Files", metavar="FILE", default_text="none",
        help="TOML file with the same keys as these flags (top-level keys or a [run] table); flags override it. A regular file; numbers must be finite.",
    ), is_setting=False),
    Flag("overwrite", bool, ("--overwrite/--no-overwrite",), Setting(
        section="Outputs", help="Replace the run already in --out.",
        details="Everything is built and checked first; then the old run's files are moved to a hidden sibling "
                "`.<name>.replaced-<pid>` and deleted once the new run has written its first checkpoint. If the new "
                "run fails before that, the old run is put back. Other files in the folder are never touched.",
    ), default=False, is_setting=False),
    Flag("quiet", bool, ("--quiet/--no-quiet",), Setting(
        section="Outputs", help="No progress bar, components line or summary; only the final `Run written to DIR` line.",
    ), default=False, is_setting=False),
)


def run_command_flags() -> list[Flag]:
    """The options of `gankit run`: one per RunConfig setting, then the four that are not settings."""
    return with_default_texts([*run_flags(), *RUN_ONLY_FLAGS])


def run(**values) -> None:
    """Train a GAN and write a run directory (config, metrics, samples, checkpoints)."""
    from gankit.config import RunConfig

    resume, config, overwrite, quiet = (values.pop(name) for name in ("resume", "config", "overwrite", "quiet"))
    flags = setting_values(run_flags(), values)
    display = ProgressDisplay(enabled=not quiet)
    report = RunReport()
    # The report first: its components line comes before the progress bar starts.
    listeners = [report, display, _print_divergence] if not quiet else [display, _print_divergence]
    from gankit.runs import new_run, train_in_folder
    from gankit.signals import INTERRUPTED_EXIT_CODE, TrainingInterrupted

    if resume is not None:
        if config is not None or overwrite:
            raise GankitError("--resume continues a run with its own config; --config and --overwrite cannot be given with it")
        from gankit.resume import check_run_folder

        out_dir, trainer = check_run_folder(resume), None
    else:
        trainer, out_dir = new_run(RunConfig.from_sources(config, flags), overwrite=overwrite, listeners=listeners)
    try:
        with display:
            trainer = train_in_folder(out_dir, trainer, overwrite=overwrite, resume_overrides=flags, listeners=listeners)
    except TrainingInterrupted as stop:
        typer.echo(f"Interrupted: {stop.message()}", err=True)
        if stop.resumable:
            typer.echo(f"Resume with: {stop.resume_command()}", err=True)
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
    except StoppedAtOnce as stop:
        raise CommandInterrupted(stop.message(out_dir)) from None
    if trainer.distributed.is_main:
        if not quiet:
            typer.echo(report.summary())
        typer.echo(f"Run written to {out_dir}")


app.command("run")(command(run, run_command_flags()))


class RunReport:
    """What a run says besides its progress bar, from the engine's events: the resolved components once at the
    start, and a summary at the end (final losses, where the outputs are, what to run next)."""

    def __init__(self) -> None:
        self.started: RunStarted | None = None
        self.finished: RunFinished | None = None
        self.values: dict[str, float] = {}
        self.samples: Path | None = None
        self.checkpoint: Path | None = None

    def __call__(self, event) -> None:
        if isinstance(event, RunStarted):
            self.started = event
            typer.echo(components_line(event.config))
        elif isinstance(event, StepLogged):
            self.values = event.values
        elif isinstance(event, SamplesWritten):
            self.samples = event.path
        elif isinstance(event, CheckpointWritten):
            self.checkpoint = event.path
        elif isinstance(event, RunFinished):
            self.finished = event

    def summary(self) -> str:
        """Some lines: how the run ended, where its outputs are and the commands that use them."""
        import shlex

        from gankit.checkpoint import BEST_NAME
        from gankit.plots import EVOLUTION_GIF, LOSS_PLOT

        started, finished = self.started, self.finished
        if started is None or finished is None:
            return ""
        out = finished.out
        resumed = f" (resumed from step {started.step})" if started.resumed else ""
        losses = ", ".join(f"{label} {self.values[key]:.4f}" for key, label in (("d_loss", "D loss"), ("g_loss", "G loss"))
                           if key in self.values)
        lines = [f"Finished at step {finished.step}{resumed}" + (f": {losses}" if losses else "")]
        if self.samples is not None:
            lines.append(f"  samples:     {self.samples.parent} (newest: {self.samples.name})")
        if self.checkpoint is not None:
            best = self.checkpoint.parent / BEST_NAME
            also = f"; best: {best.name}" if best.is_file() else ""
            lines.append(f"  checkpoints: {self.checkpoint.parent} (newest: {self.checkpoint.name}{also})")
        plots = [str(out / name) for name in (LOSS_PLOT, EVOLUTION_GIF) if (out / name).is_file()]
        if plots:
            lines.append(f"  plots:       {', '.join(plots)}")
        run, metric = shlex.quote(str(out)), started.config.get("metric")
        lines += [
            "Next:",
            f"  gankit sample {run} -n 64 --out samples.png",
            f"  gankit eval {run} --metric {shlex.quote(metric) if metric else 'NAME  (metrics: gankit list-plugins)'}",
            f"  gankit run --resume {run} --steps {2 * finished.step}",
        ]
        return "\n".join(lines)


def components_line(config: dict) -> str:
    """One line naming the components a run trains with, their options and the plugins that provide them."""
    regs = config.get("reg") or []
    parts = [f"arch {_component(config['arch'])}", f"loss {_component(config['loss'])}"]
    parts += [f"reg {_component(spec)}" for spec in regs] or ["no regularizer"]
    parts += [f"augment {_component(spec)}" for spec in config.get("augment") or []]
    parts.append(f"data {_component(config['data'])}")
    return "Components: " + ", ".join(parts)


def _component(text: str) -> str:
    from gankit.options import format_spec, parse_spec

    spec = parse_spec(text)
    shown = format_spec(spec.name, spec.options)
    return f"{shown} (plugin {spec.plugin})" if spec.plugin else shown


def _print_divergence(event) -> None:
    """Divergence warnings and rollbacks as one line each (a divergence that stops the run ends as the error)."""
    if not isinstance(event, DivergenceDetected) or event.action == "stop":
        return
    if event.action == "rollback":
        what = f"rolled back to step {event.to_step} with learning rates x{event.lr_factor}"
    else:
        what = "use --on-divergence rollback to roll back automatically"
    typer.echo(f"Warning: step {event.step}: {event.detail}; {what}", err=True)


class ProgressDisplay:
    """A rich progress bar fed by the engine's events: step, losses, img/s."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = None
        self.task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        if isinstance(event, RunStarted):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=event.total_steps, completed=event.step, stats="")
            resumed = f", resumed from step {event.step}" if event.resumed else ""
            self.progress.console.print(f"device {event.device}, writing {event.out}{resumed}")
        elif isinstance(event, StepLogged) and self.progress is not None:
            from gankit.plots import loss_statistics

            values = event.values
            shown = [f"D {values['d_loss']:.3f}", f"G {values['g_loss']:.3f}"]
            shown += [f"{name} {values[name]:.3f}" for name in loss_statistics(values)]
            if event.images_per_second:
                shown.append(f"{event.images_per_second:.0f} img/s")
            self.progress.update(self.task, completed=event.step, stats="  ".join(shown))
        elif isinstance(event, RunFinished) and self.progress is not None:
            self.progress.update(self.task, completed=event.step)


# -- gankit list-plugins -----------------------------------------------------------------------------


@app.command("list-plugins")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List plugins (version, source, status) and their components: description, aliases, name collisions."""
    from gankit.catalog import list_plugins as plugin_listing

    listing = plugin_listing()
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    plugins = Table(title="gankit plugins")
    for column in ("plugin", "version", "source", "provides", "status"):
        plugins.add_column(column)
    for plugin in listing:
        provides = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in plugin["provides"].items())
        status = "[green]ok[/]" if plugin["status"] == "ok" else f"[red]{plugin['status']}[/]"
        if plugin["error"]:
            status += f": {escape(plugin['error'])}"
        plugins.add_row(plugin["name"], plugin["version"], plugin["source"], provides or "-", status)
    console = Console()
    console.print(plugins)
    console.print(_components_table(listing), highlight=False)


def _components_table(listing: list[dict]):
    from rich.markup import escape
    from rich.table import Table

    components = sorted((c for plugin in listing for c in plugin["components"]), key=lambda c: (c["kind"], c["name"]))
    collide = any(c["collides_with"] for c in components)
    table = Table(
        title="components (details: gankit info NAME)",
        caption="[yellow]also:[/] other plugins register this name; give it as plugin:name" if collide else None,
    )
    for column in ("kind", "name", "plugin", "aliases", "description"):
        table.add_column(column)
    for c in components:
        name = c["name"]
        if c["collides_with"]:
            name += f"\n[yellow]also: {', '.join(c['collides_with'])}[/]"
        table.add_row(c["kind"], name, c["plugin"], ", ".join(c["aliases"]) or "-", escape(c["description"]) or "-")
    return table


# -- gankit info -------------------------------------------------------------------------------------


@app.command()
def info(
    name: Annotated[str, typer.Argument(help="A component: NAME, plugin:NAME, or KIND:NAME (e.g. loss:bce) if ambiguous.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show one component: its plugin, description, aliases and options (types and defaults)."""
    from gankit.catalog import describe, find
    from gankit.registry import default_registry

    registry = default_registry()
    details = describe(registry, find(registry, name))
    if as_json:
        typer.echo(json.dumps(details, indent=2, default=repr))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"[bold]{details['kind']} {details['name']}[/] from plugin {details['plugin']} "
                  f"({details['flag']} {details['qualified_name']})")
    if details["description"]:
        console.print(escape(details["description"]))
    console.print(f"aliases: {', '.join(details['aliases']) or 'none'}")
    if details["collides_with"]:
        console.print(f"[yellow]also registered by: {', '.join(details['collides_with'])}[/]")
    if not details["options"]:
        console.print("options: none" + (" named (it accepts any key=value)" if details["accepts_other_options"] else ""))
        return
    table = Table(title="options", title_justify="left")
    for column in ("option", "type", "default"):
        table.add_column(column)
    for row in details["options"]:
        default = "(required)" if row["required"] else repr(row["default"])
        table.add_row(row["name"], row["type"] or "-", escape(default))
    console.print(table)
    if details["accepts_other_options"]:
        console.print("It also accepts options not listed here (**kwargs).")


# -- gankit bench ------------------------------------------------------------------------------------


def bench_command_flags() -> list[Flag]:
    """The options of `gankit bench`: the run settings that change the step it times (``bench=True`` in
    RunConfig), said bench's way where it differs, and bench's own."""
    flags = [
        setting_flag(field, BENCH_SHOWN.get(field.name), default=BENCH_DEFAULTS.get(field.name))
        for field in settings() if field.metadata["setting"].bench
    ]
    return with_default_texts([*flags, *BENCH_ONLY_FLAGS])


# Where bench differs from a run: it makes synthetic data of a fixed size unless told to read a data source.
BENCH_DEFAULTS = {"image_size": 64}
BENCH_SHOWN = {
    "data": Setting(section="", metavar="SPEC", default_text="synthetic",
                    help="Data source to train on and to time alone (default: synthetic images)."),
    "image_size": Setting(section="", metavar="N", default_text="64", help="Image size in pixels."),
}
BENCH_ONLY_FLAGS = (
    Flag("steps", int, ("--steps",), Setting(section="", metavar="N", default_text="10",
                                            help="Timed training steps (generator updates)."), default=10, is_setting=False),
    Flag("warmup", int, ("--warmup",), Setting(section="", metavar="N", default_text="2",
                                              help="Untimed steps first (allocator, autotuning, compilation)."),
         default=2, is_setting=False),
    Flag("channels", int, ("--channels",), Setting(section="", metavar="N", default_text="3",
                                                  help="Channels of the synthetic images."), default=3, is_setting=False),
    Flag("as_json", bool, ("--json",), Setting(section="", help="Print one JSON object instead of a table."),
         default=False, is_setting=False),
)


def bench(**values) -> None:
    """Time full training steps: img/s, steps/s, achieved GFLOP/s and peak memory (and the data alone with --data)."""
    from gankit.bench import bench as run_bench

    as_json = values.pop("as_json")
    given = {key: value for key, value in values.items() if value is not None}
    result = run_bench(**given)
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gankit bench: {result.arch}, {result.loss}, {result.image_size}px, batch {result.batch_size}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("device", f"{result.device} ({result.precision}{', compiled' if result.compile else ''}"
                   f"{', channels_last' if result.channels_last else ''})"),
        ("img/s", f"{result.img_per_s:,.1f}"),
        ("steps/s", f"{result.steps_per_s:,.3f}"),
        ("GFLOP per step (counted)", f"{result.gflop_per_step:,.2f}"),
        ("achieved GFLOP/s", f"{result.gflop_per_s:,.1f}"),
        (f"peak memory ({result.peak_memory_kind})", f"{result.peak_memory_mib:,.0f} MiB"),
        ("timed", f"{result.steps} steps in {result.seconds:.2f} s after {result.warmup} warm-up"),
    ]
    if result.data_img_per_s is not None:
        rows.append((f"data pipeline alone ({result.data})", f"{result.data_img_per_s:,.1f} img/s"))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


app.command("bench")(command(bench, bench_command_flags()))


def cli_reference(document: str) -> str:
    """docs/cli.md with its generated options tables (of `gankit run`, `gankit sweep` and `gankit bench`) brought up to date."""
    document = replace_generated(document, "gankit run", options_markdown(run_command_flags(), SECTIONS))
    document = replace_generated(document, "gankit sweep", sweep_options_markdown())
    return replace_generated(document, "gankit bench", options_markdown(bench_command_flags()))


# -- gankit sweep and gankit compare ----------------------------------------------------------------


SWEEP_ONLY_FLAGS = (
    Flag("out", Optional[Path], ("--out",), Setting(
        section="", metavar="DIR", default_text="required, no default",
        help="The sweep folder: sweep.json, status.json, logs/ and one run folder per setting and seed.",
    ), is_setting=False),
    Flag("grid", Optional[list[str]], ("--set",), Setting(
        section="", metavar="KEY=V1,V2", default_text="none",
        help="A setting of gankit run and its values to sweep; repeat for a grid. Values split on ; when one is "
             "given (arch=mlp:width=16,depth=1;mlp:width=32,depth=1); reg=none, reg=clip+gp.",
    ), is_setting=False),
    Flag("seeds", int, ("--seeds",), Setting(section="", metavar="N", default_text="1",
                                            help="Seeds per setting: --seed, --seed + 1, ..."), default=1, is_setting=False),
    Flag("jobs", int, ("--jobs",), Setting(
        section="", metavar="N", default_text="1",
        help="Runs at once, as child processes; each gets --threads cores/N unless --threads is given.",
    ), default=1, is_setting=False),
    Flag("print_commands", bool, ("--print-commands",), Setting(
        section="", help="Print one gankit run command per unfinished run (for a cluster scheduler) and run nothing.",
    ), default=False, is_setting=False),
)


def sweep_command_flags() -> list[Flag]:
    """The options of `gankit sweep`: its own, then every setting of `gankit run` but --out, for every run."""
    return with_default_texts([*SWEEP_ONLY_FLAGS, *(flag for flag in run_flags() if flag.name != "out")])


def sweep(**values) -> None:
    """Train a grid of settings over seeds, one run folder each, N at a time; then compare them."""
    from gankit.sweep import sweep as run_sweep

    folder, grid, seeds, jobs, print_commands = (values.pop(name) for name in ("out", "grid", "seeds", "jobs", "print_commands"))
    if folder is None:
        raise GankitError("--out DIR is required: the sweep folder")
    failed = run_sweep(folder, grid or [], setting_values(run_flags(), values), seeds=seeds, jobs=jobs,
                       print_commands=print_commands, echo=typer.echo)
    if not print_commands:
        _print_comparison([folder])
    if failed:
        raise GankitError(f"{len(failed)} runs failed ({', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}); "
                          f"their errors are in {folder / 'status.json'}")


app.command("sweep")(command(sweep, sweep_command_flags()))


def sweep_options_markdown() -> str:
    """docs/cli.md's options of `gankit sweep`: its own in a table, then the run's it passes on, named."""
    passed = [name for flag in run_flags() if flag.name != "out" for declaration in flag.declarations
              for name in declaration.split("/")]
    return (options_markdown(SWEEP_ONLY_FLAGS) + "\n- " + " ".join(f"`{name}`" for name in passed)
            + ": the options of [gankit run](#gankit-run), given to every run.\n")


@app.command()
def compare(
    run_or_sweep: Annotated[list[Path], typer.Argument(help="Run folders and sweep folders.", metavar="RUN_OR_SWEEP")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (one line per setting) instead of a table.")] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="PNG", help="Also draw the metric curves: mean and min-max band per setting.")] = None,
) -> None:
    """Compare runs by setting: mean ± std over seeds of the final and best metric, throughput, wall time, divergences."""
    if as_json and as_csv:
        raise GankitError("--json and --csv cannot be given together")
    _print_comparison(run_or_sweep, style="json" if as_json else "csv" if as_csv else "table", plot=plot)


def _print_comparison(paths, style: str = "table", plot: Path | None = None) -> None:
    from gankit import compare as comparing

    result = comparing.comparison(paths)
    if style == "table":
        comparing.print_table(result)
    else:
        typer.echo(comparing.as_json(result) if style == "json" else comparing.as_csv(result), nl=style == "json")
    if plot is not None:
        written = comparing.plot(result, plot)
        typer.echo(f"Wrote {written}" if written else f"No evaluations to plot; {plot} not written", err=style != "table")


# -- gankit sample -----------------------------------------------------------------------------------


DEFAULT_SAMPLES = 64
DEFAULT_SAMPLES_PER_CLASS = 8  # the columns of a training run's sample grid


DrsOption = Annotated[
    Optional[float], typer.Option("--drs", metavar="K", help="Discriminator rejection sampling: keep each sample "
                                  "with probability min(1, (D's density ratio / its 99th percentile)^K); 1 is "
                                  "the plain rule, larger K drops more samples where the data is thin. Loss bce "
                                  "or least-squares, unconditional runs (docs/sampling.md).")
]


RefineOption = Annotated[
    Optional[int], typer.Option("--refine", metavar="N", help="Latent refinement: move each sample's noise N small "
                                "steps uphill on the discriminator's density ratio before generating; moves samples "
                                "off the thin bridges between modes. Loss bce or least-squares, unconditional runs "
                                "(docs/sampling.md).")
]
RefineRateOption = Annotated[
    Optional[float], typer.Option("--refine-rate", metavar="ETA", help="With --refine: the step size. [default: 0.001]")
]


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file, or a run folder (its newest checkpoint).")],
    n: Annotated[
        Optional[int], typer.Option("-n", "--count", help="Number of samples; per class of a conditional run. "
                                                          "[default: 64; 8 per class]")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Output file: .png (a grid of images, or a scatter plot of 2-D data) or .npy (raw "
                                "samples); with --interpolate .gif or .png.")
    ] = Path("samples.png"),
    classes: Annotated[
        Optional[str], typer.Option("--class", help="Classes of a conditional run: indices or names, e.g. 3 or 0,1,2 "
                                                    "(default: all). One grid row per class.")
    ] = None,
    interpolate: Annotated[
        Optional[int], typer.Option(help="Latent walk through this many noise vectors (spherical interpolation).")
    ] = None,
    frames: Annotated[
        Optional[int], typer.Option(help="With --interpolate: frames from one noise vector to the next. [default: 8]")
    ] = None,
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA generator when the checkpoint has one.")] = True,
    drs: DrsOption = None,
    refine: RefineOption = None,
    refine_rate: RefineRateOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists (atomically: never half-written).")] = False,
) -> None:
    """Write samples from a checkpoint's generator: a PNG grid for images, a .npy array of raw samples for any data,
    or a latent walk (--interpolate) as a GIF or a PNG strip."""
    _check_sample_options(out, overwrite=overwrite, seed=seed, device=device, n=n, interpolate=interpolate,
                          frames=frames, drs=drs, refine=refine, refine_rate=refine_rate)
    from gankit.engine import resolve_device
    from gankit.inference import load_generator, resolve_classes

    try:
        device = str(resolve_device(device))
        generator, metadata = load_generator(checkpoint, device=device, ema=ema)
        chosen = resolve_classes(metadata, classes)
        generator, refined = _refined(generator, metadata, refine, refine_rate, device=device)
        if interpolate is not None:
            message = _write_walk(generator, metadata, out, interpolate, frames, seed=seed, device=device, classes=chosen)
        else:
            count = n if n is not None else DEFAULT_SAMPLES if chosen is None else DEFAULT_SAMPLES_PER_CLASS
            message = _write_samples(generator, metadata, out, count, seed=seed, device=device, classes=chosen, drs=drs)
    except KeyboardInterrupt:
        raise CommandInterrupted(f"Ctrl-C: gankit sample stopped; {shortened(out)} was left as it was") from None
    typer.echo(message + refined)


def _check_sample_options(out: Path, *, overwrite: bool, seed: int, device: str, n: int | None,
                          interpolate: int | None, frames: int | None, drs: float | None, refine: int | None,
                          refine_rate: float | None) -> None:
    """Everything gankit sample can check before it reads a file."""
    from gankit.config import check_device, check_seed
    from gankit.samples import check_sample_output

    check_sample_output(out, overwrite=overwrite, walk=interpolate is not None)
    check_seed(seed)
    check_device(device)
    _check_samplers(refine, refine_rate, drs)
    _check_sample_counts(n, interpolate, frames, drs)


def _refined(generator, metadata: dict, refine: int | None, refine_rate: float | None, *, device: str):
    """``(generator, note)``: with ``--refine``, the generator behind latent refinement (refuses a conditional
    run) and the words the message ends with; otherwise the generator as it is and no words."""
    if refine is None:
        return generator, ""
    from gankit.refinement import DEFAULT_RATE, latent_refiner

    rate = DEFAULT_RATE if refine_rate is None else refine_rate
    refiner = latent_refiner(generator, metadata, steps=refine, rate=rate, device=device)
    return refiner, f" (latent refinement, --refine {refine}, rate {refiner.rate:g})"


def _check_samplers(refine: int | None, refine_rate: float | None, drs: float | None) -> None:
    """--drs K, --refine N and --refine-rate, checked before any file is read."""
    if drs is not None:
        from gankit.rejection import check_sharpness

        check_sharpness(drs)
    if refine is None:
        if refine_rate is not None:
            raise GankitError("--refine-rate applies to latent refinement: add --refine N")
        return
    from gankit.refinement import check_rate, check_steps

    check_steps(refine)
    if refine_rate is not None:
        check_rate(refine_rate)
    if drs is not None:
        raise GankitError("--refine and --drs are two ways to use the discriminator: choose one")


def _check_sample_counts(n: int | None, interpolate: int | None, frames: int | None, drs: float | None) -> None:
    from gankit.inference import check_count
    from gankit.walks import DEFAULT_FRAMES, check_walk

    if drs is not None and interpolate is not None:  # --drs itself is checked by _check_samplers
        raise GankitError("--drs does not apply to --interpolate: a walk needs every frame's noise")

    if interpolate is None:
        if frames is not None:
            raise GankitError("--frames applies to a latent walk: add --interpolate K")
        if n is not None:
            check_count(n)
        return
    if n is not None:
        raise GankitError("-n does not apply to --interpolate: the walk has (K - 1) x --frames + 1 frames")
    check_walk(interpolate, DEFAULT_FRAMES if frames is None else frames)


def _write_samples(generator, metadata: dict, out: Path, n: int, *, seed: int, device: str, classes,
                   drs: float | None = None) -> str:
    from gankit.inference import draw_checked, draw_per_class
    from gankit.samples import check_picture, sample_output_bytes, write_samples

    check_picture(out, metadata["shape"])
    extra = sample_output_bytes(metadata["shape"], out.suffix)
    if drs is not None:  # refuses a conditional run, so classes is None below
        from gankit.rejection import rejection_sampler

        generator = rejection_sampler(generator, metadata, sharpness=drs, seed=seed, device=device)
    if classes is None:
        samples = draw_checked(generator, metadata, n, seed=seed, device=device, extra_bytes_per_sample=extra)
        write_samples(samples, out, title=f"{n} samples")
        kept = "" if drs is None else f" (rejection sampling, --drs {drs:g}: {generator.acceptance:.0%} of the proposals kept)"
        return f"Wrote {n} samples to {out}{kept}"
    samples, labels = draw_per_class(generator, metadata, n, classes, seed=seed, device=device,
                                     extra_bytes_per_sample=extra)
    write_samples(samples, out, title=f"{n} samples per class", labels=labels, per_row=n)
    beside = " (labels beside it, .labels.npy)" if out.suffix.lower() == ".npy" else ""
    which = f"{len(classes)} classes" if len(classes) != 1 else "1 class"
    return f"Wrote {n} per class of {which} ({n * len(classes)} samples) to {out}{beside}"


def _write_walk(generator, metadata: dict, out: Path, keys: int, frames: int | None, *, seed: int, device: str,
                classes) -> str:
    from gankit.walks import DEFAULT_FRAMES, draw_walk, frame_count, write_walk

    frames = DEFAULT_FRAMES if frames is None else frames
    write_walk(draw_walk(generator, metadata, keys, frames, seed=seed, device=device, classes=classes), out)
    rows = "" if classes is None else f", one row per class ({len(classes)})"
    return f"Wrote a walk of {frame_count(keys, frames)} frames through {keys} noise vectors{rows} to {out}"


# -- gankit eval -------------------------------------------------------------------------------------


@app.command("eval")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file, or a run folder (its newest checkpoint).")],
    metric: Annotated[str, typer.Option(help="Metric: modes, swd, digits, fid, or a plugin's (name:key=value).")],
    n: Annotated[Optional[int], typer.Option("-n", "--count", help="Samples to score (default: the metric's).")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Weights file for metrics that need one (fid: Inception v3).")] = None,
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA generator when the checkpoint has one.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    drs: Annotated[
        Optional[float], typer.Option("--drs", metavar="K", help="Score the samples that pass discriminator "
                                      "rejection sampling with exponent K (as gankit sample --drs; docs/sampling.md).")
    ] = None,
    refine: Annotated[
        Optional[int], typer.Option("--refine", metavar="N", help="Score the samples after N steps of latent "
                                    "refinement (as gankit sample --refine; docs/sampling.md).")
    ] = None,
    refine_rate: RefineRateOption = None,
) -> None:
    """Score a checkpoint's generator with a metric."""
    from gankit.config import check_device

    check_device(device)
    _check_samplers(refine, refine_rate, drs)
    from gankit.engine import resolve_device
    from gankit.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(
        checkpoint, metric, count=n, seed=seed, device=str(resolve_device(device)), weights=weights, ema=ema, drs=drs,
        refine=refine, refine_rate=refine_rate,
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    direction = "higher" if result["higher_is_better"] else "lower"
    console = Console()
    console.print(
        f"{result['metric']} of {result['checkpoint']}: step {result['step']}, {result['samples']} samples"
        f"{' (EMA generator)' if result['ema'] else ''}{_sampler_note(result)}",
        highlight=False,
    )
    table = Table(caption=f"headline: {result['key']} ({direction} is better)")
    table.add_column("value")
    table.add_column("score", justify="right")
    for key, value in result["values"].items():
        table.add_row(f"[bold]{key}[/]" if key == result["key"] else key, f"{value:.6g}")
    console.print(table)


def _sampler_note(result: dict) -> str:
    if "refine" in result:
        return f", latent refinement --refine {result['refine']} (rate {result['refine_rate']:g})"
    if "drs" not in result:
        return ""
    return f", rejection sampling --drs {result['drs']:g} kept {result['acceptance']:.0%} of the proposals"


# -- gankit report -----------------------------------------------------------------------------------


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="A run folder, or a sweep: a folder of run folders.")],
    out: Annotated[
        Optional[Path], typer.Option(help="The HTML file to write (default: FOLDER/report.html).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing reports (atomically: never half-written).")] = False,
) -> None:
    """Write one self-contained HTML report (opens offline): a run's curves, samples, events, checkpoints,
    plugins and config; for a sweep, the compare table and overlaid curves, with each run's report."""
    from gankit.report import write_report

    written = write_report(folder, out, overwrite=overwrite)
    runs = len(written) - 1
    others = f" and {runs} run report{'s' if runs > 1 else ''} beside the runs" if runs else ""
    typer.echo(f"Wrote {written[0]}{others}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
