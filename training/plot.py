"""The loss curve of a run, drawn from its metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from clara_live.atomic import atomic_open


def read_metrics(path: Path) -> list[dict]:
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
    return records


def plot_metrics(metrics: Path, png: Path) -> None:
    """Train loss by step and validation NLL by epoch, in nats/token."""
    try:
        import matplotlib
    except ImportError:  # a bare GPU image may lack it; metrics.jsonl holds the same figures
        return
    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    records = read_metrics(metrics)
    # an undefined figure is null (clara_live/finite_json.py): nothing to draw
    train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    valid = [(r["step"], r["valid_nll"]) for r in records if r.get("valid_nll") is not None]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if not train and not valid:
        plt.close(fig)
        return
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue", linewidth=1)
    if valid:
        ax.plot(*zip(*valid, strict=True), "o-", label="valid NLL", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / token")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(png, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
