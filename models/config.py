"""Model hyper-parameters, saved with every checkpoint so a model reloads exactly as trained."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ModelConfig:
    n_items: int
    scenarios: tuple[str, ...]
    dim: int = 64
    layers: int = 2
    heads: int = 2
    inner: int = 256
    dropout: float = 0.5
    attn_dropout: float = 0.5
    max_len: int = 50
    use_action: bool = True  # action embedding on transformer inputs
    use_scenario: bool = True  # scenario embedding on transformer inputs
    use_time_gap: bool = True  # log2 time-gap bucket embedding on transformer inputs
    short_tau_hours: float = 24.0  # decay of the per-scenario and per-action views
    long_tau_days: float = 180.0  # decay of the long-term view
    text_dim: int = 384  # MiniLM sentence embedding size

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ModelConfig:
        return cls(**{**d, "scenarios": tuple(d["scenarios"])})


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 2020
    sampled_negatives: int = 0  # 0 = full softmax
    patience: int = 10  # epochs without validation NDCG@10 gain before stopping
    text_loss_weight: float = 1.0
