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
from gankit.events import DivergenceDetected, RunFinished, RunStarted, StepLogged
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


THREADS_HELP = "CPU threads for torch (default 1; 0: the default; also GANKIT_THREADS)."

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


@app.command()
def run(
    arch: Annotated[Optional[str], typer.Option(help="Architecture, e.g. dcgan or dcgan:width=32.")] = None,
    loss: Annotated[Optional[str], typer.Option(help="Loss, e.g. bce.")] = None,
    reg: Annotated[Optional[list[str]], typer.Option(help="Regularizer; repeat to combine.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Data source, e.g. digits (embedded) or anime.")] = None,
    data_root: Annotated[Optional[str], typer.Option(help="Folder the data source reads from.")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Image size in pixels (default: the data's own).")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Decode image folders in memory; neither read nor write the image cache.")
    ] = False,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per batch.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Generator updates to train.")] = None,
    d_steps: Annotated[Optional[int], typer.Option(help="Discriminator updates per generator update.")] = None,
    d_steps_boost: Annotated[
        Optional[int], typer.Option(help="Discriminator updates in warm-up and boost steps (WGAN: 100).")
    ] = None,
    d_steps_warmup: Annotated[
        Optional[int], typer.Option(help="First N generator updates get --d-steps-boost (WGAN: 25; 0: off).")
    ] = None,
    d_steps_boost_every: Annotated[
        Optional[int], typer.Option(help="Every Nth generator update gets --d-steps-boost (WGAN: 500; 0: off).")
    ] = None,
    generator_noise: Annotated[
        Optional[str], typer.Option(help="Generator update noise: reuse the last D step's, or fresh.")
    ] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam, rmsprop or sgd (default: the loss's choice).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate of both networks (default: the loss's).")] = None,
    lr_d: Annotated[Optional[float], typer.Option(help="Discriminator learning rate (overrides --lr).")] = None,
    lr_g: Annotated[Optional[float], typer.Option(help="Generator learning rate (overrides --lr).")] = None,
    lr_decay: Annotated[
        Optional[float], typer.Option(help="Decay both learning rates linearly towards 0 over this last fraction of the run.")
    ] = None,
    betas: Annotated[Optional[str], typer.Option(help="Adam betas, e.g. '0.5,0.999'.")] = None,
    z_dim: Annotated[Optional[int], typer.Option(help="Noise dimension.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: same seed, same device, same result.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    sample_every: Annotated[Optional[int], typer.Option(help="Write a sample grid every N steps.")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Write a checkpoint every N steps.")] = None,
    log_every: Annotated[Optional[int], typer.Option(help="Log averaged metrics every N steps.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Run directory (default: runs/<time>-<arch>-<loss>).")] = None,
    ema: Annotated[
        Optional[float], typer.Option(help="Generator EMA decay, e.g. 0.999; samples and metrics then use the EMA.")
    ] = None,
    eval_every: Annotated[
        Optional[int], typer.Option(help="Evaluate --metric every N steps; keeps the best checkpoint (0: never).")
    ] = None,
    metric: Annotated[Optional[str], typer.Option(help="Metric for --eval-every: modes, swd, digits, fid...")] = None,
    eval_count: Annotated[Optional[int], typer.Option(help="Samples per evaluation (default: the metric's).")] = None,
    logger: Annotated[
        Optional[list[str]], typer.Option(help="Extra logger (csv, tensorboard); repeat to combine. JSON lines always.")
    ] = None,
    precision: Annotated[
        Optional[str], typer.Option(help="Forward passes in fp32, bf16 (autocast) or fp16 (autocast + GradScaler; CUDA).")
    ] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the networks.")] = None,
    channels_last: Annotated[
        Optional[bool], typer.Option("--channels-last/--no-channels-last", help="NHWC memory layout for images.")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,
    keep_checkpoints: Annotated[
        Optional[int], typer.Option(help="Keep the newest N step checkpoints (0: all; default 3).")
    ] = None,
    on_divergence: Annotated[
        Optional[str],
        typer.Option(help="On NaN/Inf (or collapse): stop, or rollback to the last good checkpoint with a lower lr."),
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(help="Continue the run in this directory from its newest checkpoint; --steps N extends it."),
    ] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with the same keys as these flags.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the run already in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a GAN and write a run directory (config, metrics, samples, checkpoints)."""
    from gankit.config import RunConfig

    flags = {
        "arch": arch, "loss": loss, "reg": reg, "data": data, "data_root": data_root, "image_size": image_size,
        "data_cache": False if no_cache else None,
        "batch_size": batch_size, "steps": steps, "d_steps": d_steps, "d_steps_boost": d_steps_boost,
        "d_steps_warmup": d_steps_warmup, "d_steps_boost_every": d_steps_boost_every,
        "generator_noise": generator_noise, "optimizer": optimizer, "lr": lr,
        "lr_d": lr_d, "lr_g": lr_g, "lr_decay": lr_decay, "betas": betas, "z_dim": z_dim, "seed": seed, "device": device,
        "sample_every": sample_every, "checkpoint_every": checkpoint_every, "log_every": log_every, "out": out,
        "precision": precision, "compile": compile, "channels_last": channels_last, "threads": threads,
        "keep_checkpoints": keep_checkpoints, "on_divergence": on_divergence,
        "ema": ema, "eval_every": eval_every, "metric": metric, "eval_count": eval_count, "logger": logger,
    }
    display = ProgressDisplay(enabled=not quiet)
    listeners = [display, _print_divergence]
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
        typer.echo(f"Run written to {out_dir}")


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


@app.command()
def bench(
    arch: Annotated[str, typer.Option(help="Architecture, e.g. dcgan or dcgan:width=32.")] = "dcgan",
    loss: Annotated[str, typer.Option(help="Loss, e.g. bce.")] = "bce",
    reg: Annotated[Optional[list[str]], typer.Option(help="Regularizer; repeat to combine.")] = None,
    image_size: Annotated[int, typer.Option(help="Image size in pixels.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Examples per batch.")] = 64,
    steps: Annotated[int, typer.Option(help="Timed training steps (generator updates).")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed steps first (allocator, autotuning, compilation).")] = 2,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    data: Annotated[
        Optional[str], typer.Option(help="Data source to train on and to time alone (default: synthetic images).")
    ] = None,
    data_root: Annotated[Optional[str], typer.Option(help="Folder the data source reads from.")] = None,
    channels: Annotated[int, typer.Option(help="Channels of the synthetic images.")] = 3,
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (CUDA).")] = "fp32",
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the networks.")] = False,
    channels_last: Annotated[
        bool, typer.Option("--channels-last/--no-channels-last", help="NHWC memory layout for images.")
    ] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Time full training steps: img/s, steps/s, achieved GFLOP/s and peak memory (and the data alone with --data)."""
    from gankit.bench import bench as run_bench

    result = run_bench(
        arch=arch, loss=loss, reg=reg or [], image_size=image_size, batch_size=batch_size, steps=steps, warmup=warmup,
        device=device, data=data, data_root=data_root, channels=channels, precision=precision, compile=compile,
        channels_last=channels_last, threads=threads,
    )
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


# -- gankit sample -----------------------------------------------------------------------------------


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file, or a run folder (its newest checkpoint).")],
    n: Annotated[int, typer.Option("-n", "--count", help="Number of samples.")] = 64,
    out: Annotated[
        Path, typer.Option(help="Output file: .png (a grid of images, or a scatter plot of 2-D data) or .npy (raw samples).")
    ] = Path("samples.png"),
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Use the EMA generator when the checkpoint has one.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists (atomically: never half-written).")] = False,
) -> None:
    """Write samples from a checkpoint's generator: a PNG grid for images, a .npy array of raw samples for any data."""
    from gankit.config import check_device, check_seed
    from gankit.samples import check_sample_output

    check_sample_output(out, overwrite=overwrite)
    check_seed(seed)
    check_device(device)
    from gankit.engine import resolve_device
    from gankit.inference import check_count, draw_checked, load_generator
    from gankit.samples import check_picture, sample_output_bytes, write_samples

    check_count(n)
    try:
        device = str(resolve_device(device))
        generator, metadata = load_generator(checkpoint, device=device, ema=ema)
        check_picture(out, metadata["shape"])
        samples = draw_checked(generator, metadata, n, seed=seed, device=device,
                               extra_bytes_per_sample=sample_output_bytes(metadata["shape"], out.suffix))
        write_samples(samples, out, title=f"{n} samples")
    except KeyboardInterrupt:
        raise CommandInterrupted(f"Ctrl-C: gankit sample stopped; {shortened(out)} was left as it was") from None
    typer.echo(f"Wrote {n} samples to {out}")


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
) -> None:
    """Score a checkpoint's generator with a metric."""
    from gankit.config import check_device

    check_device(device)
    from gankit.engine import resolve_device
    from gankit.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(
        checkpoint, metric, count=n, seed=seed, device=str(resolve_device(device)), weights=weights, ema=ema
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
        f"{' (EMA generator)' if result['ema'] else ''}",
        highlight=False,
    )
    table = Table(caption=f"headline: {result['key']} ({direction} is better)")
    table.add_column("value")
    table.add_column("score", justify="right")
    for key, value in result["values"].items():
        table.add_row(f"[bold]{key}[/]" if key == result["key"] else key, f"{value:.6g}")
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
