"""All configuration in one typed object, read from `IU_*` environment variables.

Defaults run embedded with zero setup: data, models and vector files under `var/`.
A bad value fails at start-up with one line naming the variable, not deep in a worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

PREFIX = "IU_"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    """Field docs double as the configuration reference."""

    data_dir: Path = Path("var/data")  # where data sets are cached (events.csv, items.csv)
    model_dir: Path = Path("var/models")  # where trained models live, one folder each
    device: str = "auto"  # torch device for the encoder: auto (CUDA when present), cpu, cuda
    scenarios: tuple[str, ...] = ("home", "search", "video")  # comma-separated in the env var
    seed: int = 2020  # default seed for training and synthetic data
    partitions: int = 4  # partitions of every event topic and of the recommendations topic

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                values[f.name] = _parse(f.type, raw)
            except ValueError as e:
                raise SettingsError(f"{PREFIX}{f.name.upper()}={raw!r}: {e}") from None
        return cls(**values)


def _parse(type_name: object, raw: str) -> object:
    t = str(type_name)
    if t == "Path":
        return Path(raw)
    if t == "int":
        return int(raw)
    if t.startswith("tuple"):
        items = tuple(x.strip() for x in raw.split(",") if x.strip())
        if not items:
            raise ValueError("expected a comma-separated list")
        return items
    return raw
