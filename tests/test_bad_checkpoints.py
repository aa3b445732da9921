"""A corpus of bad checkpoints, for ``sample``, ``eval`` and ``run --resume``.

For each: a non-zero exit, one ``Error:`` line that names the problem, no traceback, and the files that
were there before left exactly as they were. Below the corpus: gankit reads every checkpoint it writes
(whatever its first bytes), falls back past an unusable newest checkpoint in a run folder, never opens a
FIFO, and writes checkpoints with the user's umask.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load as load_safetensors
from typer.testing import CliRunner

from gankit import checkpoint as checkpoint_module
from gankit.checkpoint import FORMAT, load_checkpoint, save_checkpoint, write_atomic
from gankit.cli import app
from gankit.errors import GankitError

TINY = [
    "--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "4",
    "--z-dim", "16", "--checkpoint-every", "2", "--sample-every", "4", "--device", "cpu", "--quiet",
]
NEWEST = "step-0000004.safetensors"
OLDER = "step-0000002.safetensors"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One finished tiny run (checkpoints at steps 2 and 4), copied by every case."""
    import torch as _torch

    threads = _torch.get_num_threads()
    _torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("template") / "run"
    result = CliRunner().invoke(app, ["run", *TINY, "--out", str(out)])
    _torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


# -- writing checkpoints byte by byte ------------------------------------------------------------------

_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.int64: "I64", torch.uint8: "U8",
           torch.complex64: "C64", torch.bool: "BOOL", torch.int32: "I32", torch.bfloat16: "BF16"}


def raw_checkpoint(
    tensors: dict[str, torch.Tensor],
    metadata: Any,
    *,
    header_length: int | None = None,
    entries: Callable[[dict], dict] = lambda header: header,
    gankit_json: str | None = None,
) -> bytes:
    """A safetensors file built by hand: any header length (padded with spaces), any header edit."""
    header: dict[str, Any] = {
        "__metadata__": {"format": FORMAT, "version": "1", "gankit": gankit_json or json.dumps(metadata)},
    }
    data = b""
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(entries(header)).encode()
    if header_length is not None:
        assert header_length >= len(text)
        text += b" " * (header_length - len(text))
    return struct.pack("<Q", len(text)) + text + data


def read_raw(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A checkpoint's tensors and metadata, read without gankit's checks (to damage them on purpose)."""
    content = path.read_bytes()
    header = json.loads(content[8 : 8 + struct.unpack("<Q", content[:8])[0]])
    return load_safetensors(content), json.loads(header["__metadata__"]["gankit"])


def rewrite(path: Path, change: Callable[[dict, dict], Any], **raw_options) -> None:
    tensors, metadata = read_raw(path)
    change(tensors, metadata)
    path.write_bytes(raw_checkpoint(tensors, metadata, **raw_options))


def first_generator_weight(tensors: dict) -> str:
    return next(name for name in sorted(tensors) if name.startswith("generator.") and tensors[name].is_floating_point())


def first_generator_entry(header: dict) -> dict:
    return header[next(name for name in sorted(header) if name.startswith("generator.") and header[name]["dtype"] == "F32")]


# -- the corpus --------------------------------------------------------------------------------------


@dataclass
class BadCheckpoint:
    """``damage(checkpoint, run)`` spoils the newest checkpoint of a copied run (the older one is deleted, so
    there is nothing to fall back to); ``command`` is what is run on it; ``fragments`` must be in the error."""

    name: str
    damage: Callable[[Path, Path], None]
    fragments: tuple[str, ...]
    command: str = "sample"


def edit_metadata(change: Callable[[dict], Any]) -> Callable[[Path, Path], None]:
    return lambda path, run: rewrite(path, lambda tensors, metadata: change(metadata))


def edit_tensors(change: Callable[[dict], Any]) -> Callable[[Path, Path], None]:
    return lambda path, run: rewrite(path, lambda tensors, metadata: change(tensors))


def edit_header(change: Callable[[dict], Any]) -> Callable[[Path, Path], None]:
    return lambda path, run: rewrite(path, lambda tensors, metadata: None, entries=lambda header: change(header) or header)


def shift_offsets(by: int) -> Callable[[dict], None]:
    def change(header: dict) -> None:
        entry = first_generator_entry(header)
        entry["data_offsets"] = [offset + by for offset in entry["data_offsets"]]

    return change


def replace_with(content: bytes) -> Callable[[Path, Path], None]:
    return lambda path, run: path.write_bytes(content)


def set_key(key: str, value: Any) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        *parents, last = key.split(".")
        for parent in parents:
            document = document[parent]
        document[last] = value

    return change


def set_keys(values: dict[str, Any]) -> Callable[[dict], None]:
    return lambda document: [set_key(key, value)(document) for key, value in values.items()]


def make_nan(tensors: dict) -> None:
    tensors[first_generator_weight(tensors)].view(-1)[3] = math.nan


def make_inf_in_discriminator(tensors: dict) -> None:
    name = next(n for n in sorted(tensors) if n.startswith("discriminator.") and tensors[n].is_floating_point())
    tensors[name].view(-1)[0] = math.inf


def make_complex(tensors: dict) -> None:
    name = first_generator_weight(tensors)
    tensors[name] = tensors[name].to(torch.complex64)


def fifo(path: Path, run: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def folder(path: Path, run: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("not a checkpoint\n")


def symlink_loop(path: Path, run: Path) -> None:
    path.unlink()
    path.symlink_to(path.name)


def link_to(target: str) -> Callable[[Path, Path], None]:
    def damage(path: Path, run: Path) -> None:
        path.unlink()
        path.symlink_to(target)

    return damage


def torch_save(legacy: bool) -> Callable[[Path, Path], None]:
    return lambda path, run: torch.save({"step": 4}, path, _use_new_zipfile_serialization=not legacy)


def header_length(value: int, then: bytes = b"{}") -> Callable[[Path, Path], None]:
    return lambda path, run: path.write_bytes(struct.pack("<Q", value) + then + b" " * 64)


def duplicate_tensor(path: Path, run: Path) -> None:
    content = path.read_bytes()
    length = struct.unpack("<Q", content[:8])[0]
    header = content[8 : 8 + length].decode()
    name = first_generator_weight(read_raw(path)[0])
    start = header.index(f'"{name}"')
    entry_end = header.index("}", start) + 1
    doubled = header[:start] + header[start:entry_end] + "," + header[start:]  # the same key twice
    path.write_bytes(struct.pack("<Q", len(doubled)) + doubled.encode() + content[8 + length :])


def duplicate_metadata_key(path: Path, run: Path) -> None:
    tensors, metadata = read_raw(path)
    text = json.dumps(metadata)
    path.write_bytes(raw_checkpoint(tensors, None, gankit_json='{"step": 0, ' + text[1:]))


def another_architecture(path: Path, run: Path) -> None:
    rewrite(path, lambda tensors, metadata: set_key("config.arch", "dcgan:width=16")(metadata))


CORPUS = [
    # -- structure (case 1, and what a hostile file can hold) -------------------------------------------
    BadCheckpoint("torch.save zip file", torch_save(legacy=False), ("pickle", "never unpickles")),
    BadCheckpoint("torch.save legacy pickle", torch_save(legacy=True), ("pickle", "never unpickles")),
    BadCheckpoint("torch.save zip file on resume", torch_save(legacy=False), ("pickle", "never unpickles"), "resume"),
    BadCheckpoint("zero-byte file", replace_with(b""), ("truncated (0 bytes)",)),
    BadCheckpoint("header length 0", header_length(0, b"\x00"), ("not a safetensors checkpoint",)),
    BadCheckpoint("header length 2^64-1", header_length(2**64 - 1), ("corrupted", "not plausible")),
    BadCheckpoint("header longer than the file", header_length(4096), ("truncated",)),
    BadCheckpoint("header JSON is a list", lambda path, run: path.write_bytes(struct.pack("<Q", 8) + b"[1, 2]  "), ("not a safetensors checkpoint",)),
    BadCheckpoint("header not JSON", lambda path, run: path.write_bytes(struct.pack("<Q", 8) + b"{oops:} "), ("damaged header",)),
    BadCheckpoint("header not UTF-8", lambda path, run: path.write_bytes(struct.pack("<Q", 7) + b'{"\xff":1}'), ("damaged header",)),
    BadCheckpoint("tensor offsets outside the file", edit_header(shift_offsets(10**12)), ("truncated", "need")),
    BadCheckpoint("tensor offsets reversed", edit_header(lambda h: first_generator_entry(h).update(data_offsets=[8, 4])), ("damaged offsets",)),
    BadCheckpoint("tensor shape does not fit its bytes", edit_header(lambda h: first_generator_entry(h).update(shape=[1])), ("does not fit its shape",)),
    BadCheckpoint("tensor shape negative", edit_header(lambda h: first_generator_entry(h).update(shape=[-1])), ("damaged shape",)),
    BadCheckpoint("the same tensor twice", duplicate_tensor, ("appears twice",)),
    BadCheckpoint("the same metadata key twice", duplicate_metadata_key, ("damaged metadata",)),
    BadCheckpoint("header JSON nested 100,000 deep", replace_with(struct.pack("<Q", 200_007) + b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), ("damaged header", "recursion")),
    BadCheckpoint("bytes after the last tensor", lambda path, run: path.write_bytes(path.read_bytes() + b"junk"), ("4 bytes after its last tensor",)),
    BadCheckpoint("__metadata__ not strings", edit_header(lambda h: h.update(__metadata__={"format": 1})), ("__metadata__",)),
    # -- dtypes (case 14) ------------------------------------------------------------------------------
    BadCheckpoint("complex weights", edit_tensors(make_complex), ("dtype C64 (complex numbers)", "does not load")),
    BadCheckpoint("integer weights", edit_tensors(lambda t: t.__setitem__(first_generator_weight(t), t[first_generator_weight(t)].to(torch.int64))), ("dtype torch.int64 in the checkpoint",)),
    BadCheckpoint("unknown dtype", edit_header(lambda h: first_generator_entry(h).update(dtype="F8_E4M3")), ("dtype F8_E4M3", "does not load")),
    BadCheckpoint("complex weights on resume", edit_tensors(make_complex), ("dtype C64",), "resume"),
    # -- non-finite weights (case 13) ------------------------------------------------------------------
    BadCheckpoint("NaN in the generator", edit_tensors(make_nan), ("NaN or Inf in generator.",)),
    BadCheckpoint("NaN in the generator, eval", edit_tensors(make_nan), ("NaN or Inf in generator.",), "eval"),
    BadCheckpoint("Inf in the discriminator on resume", edit_tensors(make_inf_in_discriminator), ("NaN or Inf in discriminator.",), "resume"),
    # -- not a regular file (cases 15, 20) -------------------------------------------------------------
    BadCheckpoint("a FIFO", fifo, ("FIFO",)),
    BadCheckpoint("a FIFO on resume", fifo, ("FIFO",), "resume"),
    BadCheckpoint("a FIFO in a run folder", fifo, ("FIFO",), "sample-run"),
    BadCheckpoint("a folder named like a checkpoint", folder, ("is a folder",), "resume"),
    BadCheckpoint("a symlink loop", symlink_loop, ("Too many levels of symbolic links",)),
    BadCheckpoint("a symlink loop on resume", symlink_loop, ("Too many levels of symbolic links",), "resume"),
    BadCheckpoint("a link to /dev/zero", link_to("/dev/zero"), ("a character device",), "resume"),
    BadCheckpoint("a dangling symlink", link_to("gone.safetensors"), ("link to a missing file",)),
    # -- metadata of the wrong shape (case 17) ---------------------------------------------------------
    BadCheckpoint("batches not a table", edit_metadata(set_key("batches", "x")), ("batches must be",), "resume"),
    BadCheckpoint("batches position negative", edit_metadata(set_key("batches.position", -3)), ("batches must be",), "resume"),
    BadCheckpoint("rng_python not a state", edit_metadata(set_key("rng_python", 5)), ("rng_python must be",), "resume"),
    BadCheckpoint("rng_python state out of range", edit_metadata(lambda m: m["rng_python"][1].__setitem__(0, -1)), ("rng_python must be",), "resume"),
    BadCheckpoint("rng.torch of the wrong size", edit_tensors(lambda t: t.__setitem__("rng.torch", torch.zeros(3, dtype=torch.uint8))), ("random state rng.torch",), "resume"),
    BadCheckpoint("rng.noise missing", edit_tensors(lambda t: t.pop("rng.noise")), ("lacks 'rng.noise'",), "resume"),
    BadCheckpoint("config.arch a number", edit_metadata(set_key("config.arch", 5)), ("arch must be str", "5")),
    BadCheckpoint("config.arch a number on resume", edit_metadata(set_key("config.arch", 5)), ("arch must be str",), "resume"),
    BadCheckpoint("config not a table", edit_metadata(set_key("config", [1])), ("config must be a table",)),
    BadCheckpoint("step negative", edit_metadata(set_key("step", -1)), ("step must be a non-negative integer",)),
    BadCheckpoint("step a bool", edit_metadata(set_key("step", True)), ("step must be a non-negative integer", "true")),
    BadCheckpoint("step missing", edit_metadata(lambda m: m.pop("step")), ("no step",)),
    BadCheckpoint("shape a string", edit_metadata(set_key("shape", "abc")), ("shape must be",)),
    BadCheckpoint("z_dim zero", edit_metadata(set_key("z_dim", 0)), ("z_dim must be a positive integer",)),
    BadCheckpoint("states a list", edit_metadata(set_key("states", [])), ("states must be a table",), "resume"),
    BadCheckpoint("guard streak a string", edit_metadata(set_key("guard", {"rollbacks": 0, "streak": "x"})), ("guard must be",), "resume"),
    BadCheckpoint("best value a string", edit_metadata(set_key("best", {"metric": "g_loss", "value": "low", "step": 2})), ("best must be",), "resume"),
    BadCheckpoint("metadata nested 100,000 deep", lambda path, run: rewrite(path, lambda t, m: None, gankit_json='{"step": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"), ("damaged metadata",)),
    BadCheckpoint("config value of the wrong type", edit_metadata(set_key("config.steps", "many")), ("steps must be int", "many")),
    # 1e7 would build a 40 GB generator before its weights could be compared: shapes are checked first.
    BadCheckpoint("z_dim of 10 million", edit_metadata(set_keys({"z_dim": 10**7, "config.z_dim": 10**7})), ("shape (16, 32, 4, 4) in the checkpoint", "(10000000, 32, 4, 4)")),
    BadCheckpoint("metadata not an object", lambda path, run: rewrite(path, lambda t, m: None, gankit_json="[1, 2]"), ("not a JSON object",)),
    BadCheckpoint("a huge value in the metadata", edit_metadata(set_key("config.arch", ["x" * 1_000_000])), ("arch must be str",)),
    BadCheckpoint("a checkpoint of another architecture", another_architecture, ("does not match the architecture",)),
]


def prepare(case: BadCheckpoint, template: Path, work: Path) -> list[str]:
    run = work / "run"
    shutil.copytree(template, run, symlinks=True)
    (run / "checkpoints" / OLDER).unlink()
    checkpoint = run / "checkpoints" / NEWEST
    case.damage(checkpoint, run)
    return {
        "sample": ["sample", str(checkpoint), "--out", str(work / "grid.png")],
        "sample-run": ["sample", str(run), "--out", str(work / "grid.png")],
        "eval": ["eval", str(checkpoint), "--metric", "modes", "-n", "16"],
        "resume": ["run", "--resume", str(run), "--steps", "6"],
    }[case.command]


def snapshot(folder: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            files[str(path)] = b"link:" + os.readlink(path).encode()
        elif path.is_file():
            files[str(path)] = path.read_bytes()
        else:
            files[str(path)] = b"kind:" + oct(path.stat().st_mode).encode()
    return files


def test_the_corpus_covers_every_command():
    assert len({case.name for case in CORPUS}) == len(CORPUS)
    assert {case.command for case in CORPUS} == {"sample", "sample-run", "eval", "resume"}


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_a_bad_checkpoint_fails_with_one_line_naming_the_problem(case, template, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args = prepare(case, template, work)
    before = snapshot(work)
    result = CliRunner().invoke(app, args)
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert all(line.startswith("Warning: skipping ") for line in lines[:-1]), result.output
    assert len(errors[0]) < 600, errors[0][:1000]
    for fragment in case.fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    assert snapshot(work) == before, "files were changed"


# -- case 1: every checkpoint gankit writes is read back, whatever its first byte ---------------------------


def test_every_low_byte_of_the_header_length_loads(tmp_path):
    tensors = {"generator.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "rng.torch": torch.zeros(4, dtype=torch.uint8)}
    metadata = {"step": 7, "note": "x"}
    shortest = len(raw_checkpoint(tensors, metadata)) - 8 - 24 - 4
    for low_byte in range(256):
        length = shortest + (low_byte - shortest) % 256
        path = tmp_path / f"low-{low_byte:02x}.safetensors"
        path.write_bytes(raw_checkpoint(tensors, metadata, header_length=length))
        assert path.read_bytes()[0] == low_byte
        loaded, loaded_metadata = load_checkpoint(path)
        assert loaded_metadata == metadata and torch.equal(loaded["generator.weight"], tensors["generator.weight"])


def test_every_padded_header_length_that_gankit_writes_loads(tmp_path):
    seen = set()
    for extra in range(400):
        path = tmp_path / "step-0000001.safetensors"
        save_checkpoint(path, {"generator.weight": torch.ones(3)}, {"step": 1, "note": "n" * extra})
        seen.add(path.read_bytes()[0])
        assert load_checkpoint(path)[1]["note"] == "n" * extra
    assert seen == set(range(0, 256, 8))  # padding to 8 bytes allows these low bytes, 0x80 among them


@pytest.mark.parametrize("length", [0x010280, 0x014B50], ids=["starts-with-0x80-0x02", "starts-with-PK"])
def test_a_run_whose_checkpoint_looks_like_a_pickle_samples_and_resumes(length, template, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(template, run)
    (run / "checkpoints" / OLDER).unlink()
    newest = run / "checkpoints" / NEWEST
    tensors, metadata = read_raw(newest)
    newest.write_bytes(raw_checkpoint(tensors, metadata, header_length=length))
    assert newest.read_bytes()[:2] == struct.pack("<H", length % 0x10000)  # b"\x80\x02" or b"PK"
    result = CliRunner().invoke(app, ["sample", str(run), "--out", str(tmp_path / "grid.png"), "-n", "4"])
    assert result.exit_code == 0 and (tmp_path / "grid.png").is_file(), result.output
    result = CliRunner().invoke(app, ["run", "--resume", str(run), "--steps", "6"])
    assert result.exit_code == 0, result.output


# -- case 20: a run folder falls back past an unusable newest checkpoint -------------------------------------

FALLBACK = {
    "truncated": (lambda path, run: path.write_bytes(path.read_bytes()[:300]), "truncated"),
    "symlink loop": (symlink_loop, "Too many levels of symbolic links"),
    "folder": (folder, "is a folder"),
    "FIFO": (fifo, "FIFO"),
    "damaged metadata": (edit_metadata(set_key("batches", None)), "batches must be"),
    "NaN weights": (edit_tensors(make_nan), "NaN or Inf"),
    "complex weights": (edit_tensors(make_complex), "C64"),
}


@pytest.mark.parametrize("command", ["sample", "resume"])
@pytest.mark.parametrize("kind", list(FALLBACK))
def test_an_unusable_newest_checkpoint_is_skipped_with_one_warning(kind, command, template, tmp_path):
    damage, reason = FALLBACK[kind]
    run = tmp_path / "run"
    shutil.copytree(template, run)
    damage(run / "checkpoints" / NEWEST, run)
    args = {
        "sample": ["sample", str(run), "--out", str(tmp_path / "grid.png"), "-n", "4"],
        "resume": ["run", "--resume", str(run), "--steps", "3"],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1, result.output
    assert f"skipping {NEWEST}" in warnings[0] and reason in warnings[0], warnings[0]
    if command == "resume":  # it continued from step 2, the newest usable checkpoint
        assert (run / "checkpoints" / "step-0000003.safetensors").is_file()


def test_prune_and_listing_never_touch_what_is_not_a_regular_file(template, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(template, run)
    pipe = run / "checkpoints" / "step-0000009.safetensors"
    os.mkfifo(pipe)
    assert [p.name for p in checkpoint_module.list_checkpoints(run / "checkpoints")] == [OLDER, NEWEST]
    assert checkpoint_module.prune_checkpoints(run / "checkpoints", 1) == [run / "checkpoints" / OLDER]
    assert pipe.exists()


def test_an_unreadable_checkpoint_is_one_line_and_resume_falls_back(template, tmp_path, monkeypatch):
    # As root, mode 000 does not stop a read: the refusal of open() is simulated.
    run = tmp_path / "run"
    shutil.copytree(template, run)
    newest = run / "checkpoints" / NEWEST
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if Path(path) == newest:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.os, "open", refusing_open)
    with pytest.raises(GankitError, match="cannot read checkpoint .*Permission denied"):
        load_checkpoint(newest)
    result = CliRunner().invoke(app, ["sample", str(run), "--out", str(tmp_path / "grid.png"), "-n", "4"])
    assert result.exit_code == 0 and "Permission denied" in result.output, result.output


# -- case 22: checkpoints and config.toml get the user's umask, like every other run file ---------------------


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002, 0o077])
def test_atomic_writes_give_the_mode_of_a_new_file_under_the_umask(umask, tmp_path):
    previous = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        written = write_atomic(tmp_path / "config.toml", "steps = 1\n")
        checkpoint = save_checkpoint(tmp_path / "step-0000001.safetensors", {"w": torch.ones(1)}, {"step": 1})
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert plain.stat().st_mode & 0o777 == expected
    assert written.stat().st_mode & 0o777 == expected
    assert checkpoint.stat().st_mode & 0o777 == expected


def test_a_run_writes_its_checkpoints_and_config_with_the_same_mode_as_its_other_files(tmp_path):
    previous = os.umask(0o022)
    try:
        result = CliRunner().invoke(app, ["run", *TINY, "--steps", "2", "--out", str(tmp_path / "run")])
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    modes = {path.relative_to(run).as_posix(): path.stat().st_mode & 0o777 for path in run.rglob("*") if path.is_file()}
    assert modes["config.toml"] == modes["checkpoints/step-0000002.safetensors"] == modes["metrics.jsonl"] == 0o644, modes
