import json

import pytest

from edgewise.core.errors import EdgewiseError
from edgewise.core.lengths import (
    artifact_lengths,
    folder_limit,
    length_stats,
    percentile_length,
    position_limit,
    working_length,
)


def test_position_limit_reads_positions_less_the_offset_and_the_tokenizer_cap():
    assert position_limit({"max_position_embeddings": 512, "model_type": "bert"}) == 512
    assert position_limit({"max_position_embeddings": 514, "model_type": "roberta"}) == 512
    assert position_limit({"max_position_embeddings": 512}, tokenizer_max=128) == 128
    assert position_limit({"max_position_embeddings": 512}, tokenizer_max=int(1e30)) == 512  # "no limit" sentinel
    assert position_limit({}) is None and position_limit({}, tokenizer_max=64) == 64


def test_position_limit_takes_a_transformers_config_object():
    class Config:
        max_position_embeddings = 66
        model_type = "roberta"

    assert position_limit(Config()) == 64


def test_folder_limit_prefers_the_recorded_limit(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))

    assert folder_limit(tmp_path) == 256
    assert folder_limit(tmp_path, {"max_positions": 100}) == 100
    assert folder_limit(tmp_path / "missing") is None


@pytest.mark.parametrize(("limit", "recorded", "requested", "expected"), [
    (512, {}, None, 512), (4096, {}, None, 512), (None, {}, None, 512), (64, {}, None, 64),
    (512, {"max_length": 128}, None, 128), (512, {"max_length": 128}, 256, 256),
])
def test_working_length_is_requested_then_recorded_then_the_capped_limit(limit, recorded, requested, expected):
    assert working_length(limit, recorded, requested) == expected


def test_working_length_refuses_more_than_the_limit():
    with pytest.raises(EdgewiseError, match="--max-length 128 exceeds the model's limit of 64 tokens"):
        working_length(64, {}, 128, what="--max-length")


def test_artifact_lengths_of_a_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 66, "model_type": "roberta"}))

    assert artifact_lengths(tmp_path) == (64, 64)
    assert artifact_lengths(tmp_path, {"max_length": 32}) == (32, 64)


def test_percentile_length_rounds_up_to_eight_and_caps():
    assert percentile_length([10] * 99 + [1000], 99, 512) == 24
    assert percentile_length([700] * 10, 99, 512) == 512
    assert percentile_length([1, 2], 50, 512) == 8


def test_length_stats_counts_the_truncated_share():
    stats = length_stats([4, 8, 16, 32], 16)

    assert (stats["max"], stats["truncated_fraction"]) == (32, 0.25)
