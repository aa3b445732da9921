"""What `gankit run` says: its resolved components once at the start, and a summary at the end (final losses,
where the outputs are, what to run next); a resumed run says where it resumed."""
from __future__ import annotations

from typer.testing import CliRunner

from gankit.cli import app

TINY = ["--arch", "dcgan:width=8,norm=layer", "--data", "digits:count=256", "--batch-size", "16", "--steps", "2",
        "--z-dim", "16", "--device", "cpu", "--sample-every", "1", "--log-every", "1"]


def run(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["run", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_a_run_names_its_components_once_and_ends_with_a_summary(tmp_path):
    out = tmp_path / "run"
    lines = run(*TINY, "--reg", "r1", "--out", str(out))
    components = [line for line in lines if line.startswith("Components:")]
    assert components == [
        "Components: arch dcgan:width=8,norm=layer (plugin dcgan), loss bce (plugin losses), "
        "reg r1 (plugin regularizers), data digits:count=256 (plugin digits)"
    ]
    assert lines.index(components[0]) == 0
    text = "\n".join(lines)
    summary = text[text.index("Finished at step 2:"):]
    assert "D loss" in summary and "G loss" in summary and "resumed" not in summary
    assert f"samples:     {out / 'samples'} (newest: step-0000002.png)" in summary
    assert f"checkpoints: {out / 'checkpoints'} (newest: step-0000002.safetensors)" in summary
    assert f"plots:       {out / 'losses.png'}, {out / 'evolution.gif'}" in summary
    assert f"gankit sample {out} -n 64" in summary and f"gankit eval {out} --metric NAME" in summary
    assert f"gankit run --resume {out} --steps 4" in summary
    assert lines[-1] == f"Run written to {out}"

    resumed = "\n".join(run("--resume", str(out), "--steps", "3"))
    assert "resumed from step 2" in resumed
    assert "Finished at step 3 (resumed from step 2):" in resumed


def test_the_summary_suggests_the_runs_own_metric_and_quiet_says_one_line(tmp_path):
    out = tmp_path / "run"
    text = "\n".join(run("--data", "ring:count=512", "--steps", "2", "--batch-size", "16", "--eval-every", "2",
                          "--metric", "modes", "--eval-count", "100", "--device", "cpu", "--out", str(out)))
    assert f"gankit eval {out} --metric metrics:modes" in text  # as recorded: qualified
    assert "best: best.safetensors" in text
    lines = run(*TINY, "--out", str(tmp_path / "quiet"), "--quiet")
    assert lines == [f"Run written to {tmp_path / 'quiet'}"]
