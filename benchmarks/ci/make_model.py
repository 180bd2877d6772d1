"""The CI benchmark model: a small BERT classifier with fixed random weights, exported by edgewise.

Latency gates need a model of a realistic shape, not a trained one (random weights time the
same; seeded, they also predict the same, so accuracy on BBC News is a numerics check). The
tokenizer is the built-in MiniLM one, so nothing is downloaded.

    python benchmarks/ci/make_model.py runs/ci     # -> runs/ci/model-hf, runs/ci/model (ONNX)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def main(root: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from edgewise.core.builtin import model_path

    hf = root / "model-hf"
    if hf.exists():
        shutil.rmtree(hf)
    torch.manual_seed(0)
    labels = ["business", "entertainment", "politics", "sports", "tech"]
    config = BertConfig(vocab_size=30522, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=512,
                        id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)})
    BertForSequenceClassification(config).save_pretrained(hf)
    tokenizer_dir, _ = model_path("builtin:all-minilm-l6-v2")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(tokenizer_dir / name, hf / name)
    subprocess.run([sys.executable, "-m", "edgewise", "export", str(hf), "-o", str(root / "model"), "--overwrite",
                    "--max-length", "128"], check=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ci"))
