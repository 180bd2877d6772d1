"""How many tokens a model takes: the one place that decides it (no torch, no transformers).

Two numbers travel with every artifact, in its manifest's ``data``:
- ``max_positions``: the longest input the model can take at all (its position table, less the two
  positions RoBERTa-like models reserve, and no more than its tokenizer's ``model_max_length``);
- ``max_length``: the working length, the length it was trained with and is run at.

A stage that does not decide a new working length inherits both from its parent
(``core.stage.StageOutput.commit`` does it), so no later stage falls back to 512 by accident.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from edgewise.core.artifact import read_json
from edgewise.core.errors import EdgewiseError

# Position ids of these architectures start after the padding index, so two positions are unusable.
OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart"})
# A folder edgewise did not write records no working length: its limit, but no more than this
# (the usual BERT limit; a 4,096-position model would otherwise be run at 4,096 tokens).
DEFAULT_LENGTH = 512
# Tokenizers without a limit store a huge sentinel (int(1e30)) as model_max_length.
_NO_TOKENIZER_LIMIT = 100_000
# The settings of manifest ``data`` a derived artifact inherits unless its stage sets them.
RUNTIME_SETTINGS = ("max_length", "max_positions", "pad_token_id", "token_lengths")


def position_limit(model_config: Mapping | object, tokenizer_max: int | None = None) -> int | None:
    """The longest input of a model from its config (a config.json dict or a transformers config):
    ``max_position_embeddings`` (less 2 for RoBERTa-like models), capped by the tokenizer's
    ``model_max_length``. None when neither says."""
    get = model_config.get if isinstance(model_config, Mapping) else lambda k: getattr(model_config, k, None)
    positions = get("max_position_embeddings")
    limit = None
    if isinstance(positions, int) and positions > 0:
        limit = positions - 2 if get("model_type") in OFFSET_POSITIONS else positions
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < _NO_TOKENIZER_LIMIT:
        limit = tokenizer_max if limit is None else min(limit, tokenizer_max)
    return limit


def folder_limit(folder: Path, recorded: Mapping | None = None) -> int | None:
    """The position limit of the model in ``folder``: as its manifest recorded it, else from its
    config.json and tokenizer_config.json."""
    if recorded and isinstance(recorded.get("max_positions"), int):
        return recorded["max_positions"]
    folder = Path(folder)
    tokenizer_max = read_json(folder / "tokenizer_config.json").get("model_max_length")
    return position_limit(read_json(folder / "config.json"), tokenizer_max if isinstance(tokenizer_max, int) else None)


def known_limit(limit: int | None) -> int:
    """``limit``, or DEFAULT_LENGTH for a model whose config names none (what gets recorded and compiled)."""
    return limit or DEFAULT_LENGTH


def working_length(limit: int | None, recorded: Mapping | None = None, requested: int | None = None,
                   what: str = "max_length") -> int:
    """Tokens per text: ``requested``, else the length ``recorded`` in the manifest, else the model's
    limit (at most DEFAULT_LENGTH). A length beyond ``limit`` is an EdgewiseError."""
    length = int(requested or (recorded or {}).get("max_length") or min(limit or DEFAULT_LENGTH, DEFAULT_LENGTH))
    if limit and length > limit:
        raise EdgewiseError(f"{what} {length} exceeds the model's limit of {limit} tokens; lower it")
    return length


def artifact_lengths(folder: Path, recorded: Mapping | None = None, requested: int | None = None,
                     what: str = "max_length") -> tuple[int, int | None]:
    """(working length, position limit) of the model in ``folder`` whose manifest recorded ``recorded``; a
    sentence-transformers folder edgewise did not write gives its working length in sentence_bert_config.json
    (max_seq_length: all-MiniLM-L6-v2 takes 512 positions and is run at 256)."""
    limit = folder_limit(folder, recorded)
    if not (recorded or {}).get("max_length"):
        recorded = {**(recorded or {}), **folder_length(folder)}
    return working_length(limit, recorded, requested, what), limit


def folder_length(folder: Path) -> dict:
    """{"max_length": N} when ``folder`` is a sentence-transformers folder that sets its max_seq_length; else {}."""
    length = read_json(Path(folder) / "sentence_bert_config.json").get("max_seq_length")
    return {"max_length": length} if isinstance(length, int) and not isinstance(length, bool) and length > 0 else {}


def percentile_length(token_lengths: list[int], percentile: float, limit: int | None) -> int:
    """A working length from data: the percentile of token lengths, rounded up to a multiple of 8
    (at least 8), capped at ``limit``."""
    import numpy as np

    wanted = int(math.ceil(float(np.percentile(token_lengths, percentile)) / 8) * 8)
    return max(8, min(wanted, limit or wanted))


def length_stats(token_lengths: list[int], max_length: int) -> dict:
    """Mean, percentiles, maximum and the share of texts longer than ``max_length`` (truncated)."""
    import numpy as np

    arr = np.asarray(token_lengths)
    return {
        "mean": round(float(arr.mean()), 1),
        "p50": int(np.percentile(arr, 50)),
        "p95": int(np.percentile(arr, 95)),
        "p99": int(np.percentile(arr, 99)),
        "max": int(arr.max()),
        "truncated_fraction": round(float((arr > max_length).mean()), 4),
        # The 0th, 5th, ..., 100th percentiles: the distribution a device bench times (runtime bench
        # --seq-len data) when the texts themselves are not at hand.
        "quantiles": [int(v) for v in np.percentile(arr, list(range(0, 101, 5)), method="nearest")],
    }
