"""The multi-view interest model: a SASRec-style transformer view, cheap decayed views, and a
scenario-aware attention fusion that gives one user vector per target scenario.

All views live in item-embedding space, so a user vector scores items by a dot product and
the same item table serves the transformer's inputs, the cheap views and the ANN index.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertModel

from models.config import ModelConfig
from models.data.contract import ACTIONS
from models.views import ViewLayout

GAP_BUCKETS = 32


def gap_buckets(ts: np.ndarray) -> np.ndarray:
    """log2 bucket of seconds since the previous event (1-based; the first event gets 1)."""
    gaps = np.diff(ts, prepend=ts[:1]) // 1000 if len(ts) else ts
    return (np.minimum(GAP_BUCKETS - 2, np.floor(np.log2(1 + np.maximum(gaps, 0)))) + 1).astype(np.int64)


class SequenceEncoder(nn.Module):
    """Causal BERT over item + action + scenario + time-gap embeddings; BERT adds positions."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.action_emb = nn.Embedding(len(ACTIONS) + 1, cfg.dim, padding_idx=0) if cfg.use_action else None
        self.scen_emb = nn.Embedding(len(cfg.scenarios) + 1, cfg.dim, padding_idx=0) if cfg.use_scenario else None
        self.gap_emb = nn.Embedding(GAP_BUCKETS, cfg.dim, padding_idx=0) if cfg.use_time_gap else None
        bert = BertConfig(
            vocab_size=1,
            hidden_size=cfg.dim,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            intermediate_size=cfg.inner,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.attn_dropout,
            max_position_embeddings=cfg.max_len,
            type_vocab_size=1,
            layer_norm_eps=1e-12,
            is_decoder=True,
        )
        self.bert = BertModel(bert, add_pooling_layer=False)
        # The same BERT less its top layer, sharing every module (a plain attribute, so neither its
        # parameters nor its state are registered twice): `forward_last` runs the top layer itself.
        lower = BertModel(BertConfig(**{**bert.to_dict(), "num_hidden_layers": cfg.layers - 1}),
                          add_pooling_layer=False)
        lower.embeddings = self.bert.embeddings
        lower.encoder.layer = nn.ModuleList(self.bert.encoder.layer[:-1])
        self._lower = (lower,)

    def forward(
        self,
        item_vecs: torch.Tensor,
        items: torch.Tensor,
        actions: torch.Tensor,
        scens: torch.Tensor,
        gaps: torch.Tensor,
    ) -> torch.Tensor:
        """(B, L) right-padded inputs with their item vectors (B, L, d) -> (B, L, d) causal outputs."""
        return self._run(self.bert, item_vecs, items, actions, scens, gaps)

    def forward_last(self, item_vecs: torch.Tensor, items: torch.Tensor, actions: torch.Tensor, scens: torch.Tensor,
                     gaps: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """(B, d): `forward`'s output at position `last` of each window, computing the top layer for
        that one position. Its feed-forward, projections and norms are per position and its attention
        needs only that query, so ~half of the layer's work (and of a 2-layer forward's GELU) is skipped."""
        h = self._run(self._lower[0], item_vecs, items, actions, scens, gaps)  # (B, L, d) under the top layer
        top = self.bert.encoder.layer[-1]
        att = top.attention.self
        b, length, _ = h.shape
        x = h[torch.arange(b, device=h.device), last]  # (B, d): the one query
        heads = (b, -1, att.num_attention_heads, att.attention_head_size)
        q = att.query(x).view(b, 1, *heads[2:]).transpose(1, 2)
        k, v = (proj(h).view(*heads).transpose(1, 2) for proj in (att.key, att.value))
        # Right-padded windows: the query at `last` sees every real position up to it, as causally.
        mask = (torch.arange(length, device=h.device) <= last.unsqueeze(1)).view(b, 1, 1, length)
        o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=att.attention_head_size**-0.5)
        a = top.attention.output(o.transpose(1, 2).reshape(b, -1), x)
        return top.output(top.intermediate(a), a)

    def _run(self, bert: BertModel, item_vecs: torch.Tensor, items: torch.Tensor, actions: torch.Tensor,
             scens: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """`bert` (the whole one, or the lower half) over the summed input embeddings."""
        x = item_vecs
        for emb, idx in ((self.action_emb, actions), (self.scen_emb, scens), (self.gap_emb, gaps)):
            if emb is not None:
                x = x + emb(idx)
        return bert(inputs_embeds=x, attention_mask=(items > 0).long()).last_hidden_state

    def train(self, mode: bool = True) -> SequenceEncoder:
        """The lower half follows: its own BertModel and BertEncoder are not among our submodules."""
        super().train(mode)
        self._lower[0].train(mode)
        return self


class ScenarioFusion(nn.Module):
    """Softmax attention over views, queried by the target scenario.

    Each view first passes its own linear map P_v (initialised to identity): a decayed mean
    of item vectors has a much smaller norm than the transformer output, and without a
    per-view scale the softmax can only lose by mixing it in.
    logit(s, v) = bias[s, v] + <q_s, K(P_v view_v) + type_v> / sqrt(d): the bias is the
    scenario's prior over view types, the dot term lets the content of a view matter.
    The fused vector adds a per-scenario prior u_s in item space (what the scenario favours
    for everyone), so the views only have to explain the user's own part.
    """

    def __init__(self, n_scenarios: int, n_views: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.eye(dim).repeat(n_views, 1, 1))
        self.prior = nn.Embedding(n_scenarios + 1, dim)
        self.query = nn.Embedding(n_scenarios + 1, dim)
        self.type_emb = nn.Parameter(torch.zeros(n_views, dim))
        self.key = nn.Linear(dim, dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(n_scenarios + 1, n_views))
        self.norm = nn.LayerNorm(dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(
        self, views: torch.Tensor, present: torch.Tensor, scen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """views (..., V, d), present (..., V) bool, scen (...) -> fused (..., d), weights (..., V)."""
        projected = torch.einsum("...vd,vde->...ve", views, self.proj.to(views.dtype))
        keys = self.key(self.norm(projected)) + self.type_emb
        logits = (keys * self.query(scen).unsqueeze(-2)).sum(-1) * self.scale + self.bias[scen]
        w = torch.softmax(logits.masked_fill(~present, float("-inf")), dim=-1)
        return (w.unsqueeze(-1) * projected).sum(-2) + self.prior(scen), w


class MultiViewModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = ViewLayout.build(cfg.scenarios, cfg.short_tau_hours, cfg.long_tau_days)
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.dim, padding_idx=0)
        self.encoder = SequenceEncoder(cfg)
        self.fusion = ScenarioFusion(len(cfg.scenarios), 1 + self.layout.n, cfg.dim)
        self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim * 2), nn.GELU(), nn.Linear(cfg.dim * 2, cfg.dim))
        # Items seen in training use their learned embedding; the rest use the text projection.
        self.register_buffer("trained_mask", torch.zeros(cfg.n_items + 1, dtype=torch.bool))
        self.register_buffer("item_text", torch.zeros(cfg.n_items + 1, cfg.text_dim))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        # SASRec/RecBole initialisation: N(0, 0.02) for embeddings and linears.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def view_names(self) -> tuple[str, ...]:
        return ("short_term", *self.layout.names)

    def item_table(self) -> torch.Tensor:
        """(N+1, d) item vectors: learned where trained, text-derived for cold items; row 0 is zero."""
        learned = self.item_emb.weight
        cold = self.text_proj(self.item_text)
        table = torch.where(self.trained_mask.unsqueeze(-1), learned, cold)
        return table * (torch.arange(table.shape[0], device=table.device) > 0).unsqueeze(-1)

    def encode(
        self, table: torch.Tensor, items: torch.Tensor, actions: torch.Tensor, scens: torch.Tensor, gaps: torch.Tensor
    ) -> torch.Tensor:
        """The transformer view after every position: (B, L, d)."""
        return self.encoder(table[items], items, actions, scens, gaps)

    def encode_last(self, table: torch.Tensor, items: torch.Tensor, actions: torch.Tensor, scens: torch.Tensor,
                    gaps: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The transformer view after position `last` of each window only: (B, d). What serving needs."""
        return self.encoder.forward_last(table[items], items, actions, scens, gaps, last)

    def window_views(
        self,
        items: torch.Tensor,
        log_w: torch.Tensor,
        ts: torch.Tensor,
        table: torch.Tensor,
        carry_mean: torch.Tensor,
        carry_log_w: torch.Tensor,
        carry_ts: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cheap views after every position of a window, continuing the state before it.

        items (B, L); log_w (B, L, V) per-event log weights (-inf: not selected or padding);
        ts (B, L) float64 effective ms; carry_* the closed-form state before the window.
        Returns views (B, L, V, d) and present (B, L, V). Same numbers as `ViewState.update`.
        """
        tau = torch.as_tensor(self.layout.tau_ms, device=ts.device)
        L = items.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=ts.device).tril()
        dt = (ts.unsqueeze(2) - ts.unsqueeze(1)).clamp(min=0)  # (B, t, j)
        la = log_w.permute(0, 2, 1).unsqueeze(2) - dt.unsqueeze(1) / tau.view(1, -1, 1, 1)  # (B, V, t, j)
        la = la.masked_fill(~causal, float("-inf"))
        lc = carry_log_w.unsqueeze(-1) - (ts - carry_ts.unsqueeze(-1)).clamp(min=0).unsqueeze(1) / tau.view(1, -1, 1)
        top = torch.maximum(la.amax(-1), lc)  # (B, V, t)
        present = torch.isfinite(top)
        safe_top = torch.where(present, top, torch.zeros_like(top))
        a = torch.exp(la - safe_top.unsqueeze(-1)).float()
        c = torch.exp(lc - safe_top).float()
        emb = table[items]  # (B, L, d)
        num = a @ emb.unsqueeze(1) + c.unsqueeze(-1) * carry_mean.unsqueeze(2)
        den = a.sum(-1) + c
        views = num / den.clamp(min=1e-30).unsqueeze(-1)
        return views.permute(0, 2, 1, 3), present.permute(0, 2, 1)

    def fuse(
        self, short: torch.Tensor, cheap: torch.Tensor, cheap_present: torch.Tensor, scen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack the transformer view in front of the cheap views; return (fused, weights)."""
        views = torch.cat([short.unsqueeze(-2), cheap.to(short.dtype)], dim=-2)
        present = torch.cat([torch.ones_like(cheap_present[..., :1]), cheap_present], dim=-1)
        return self.fusion(views, present, scen)
