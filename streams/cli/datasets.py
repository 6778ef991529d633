"""Resolve a `--dataset` argument (ml-100k, synth or a folder) to a prepared folder."""

from __future__ import annotations

from pathlib import Path

from models.data import movielens, synth
from models.data.contract import write_events, write_items
from streams.settings import Settings

NAMED = ("ml-100k", "synth")


def write_synth(out: Path, spec: synth.SynthSpec) -> Path:
    events, items = synth.generate(spec)
    write_items(out / "items.csv", items)
    write_events(out / "events.csv", events)
    return out


def resolve(name: str, settings: Settings) -> Path:
    """Named data sets are fetched or generated on first use; anything else is a folder."""
    if name == "ml-100k":
        folder = settings.data_dir / "ml-100k"
        movielens.prepare(folder)
        return folder
    if name == "synth":
        folder = settings.data_dir / "synth"
        if not (folder / "events.csv").exists():
            write_synth(folder, synth.SynthSpec(scenarios=settings.scenarios, seed=settings.seed))
        return folder
    folder = Path(name)
    if not (folder / "events.csv").exists() or not (folder / "items.csv").exists():
        raise FileNotFoundError(f"{folder}: expected events.csv and items.csv (or use one of {', '.join(NAMED)})")
    return folder
