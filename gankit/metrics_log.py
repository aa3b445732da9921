"""``metrics.jsonl``: one JSON object per logged interval and one per divergence event, and how a resumed or
rolled-back run drops the rows it logs again."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gankit.checkpoint import write_atomic
from gankit.events import DivergenceDetected, Event, StepLogged

METRICS_LOG = "metrics.jsonl"


class MetricsLog:
    """Appends one JSON object per logged interval to ``metrics.jsonl``, and one per divergence event."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepLogged):
            self._append({"step": event.step, **event.values, "img_per_s": event.images_per_second})
        elif isinstance(event, DivergenceDetected):  # rows with an "event" key are events, not interval averages
            self._append({"step": event.step, "event": event.name, **event.details()})

    def _append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def truncate_metrics(path: str | Path, step: int, *, keep_events: bool) -> None:
    """Drop the metrics rows logged after ``step`` (and a last line cut short by a kill), atomically."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict):
            continue
        if row.get("step", 0) <= step or (keep_events and "event" in row):
            kept.append(line)
    write_atomic(path, "".join(line + "\n" for line in kept))
