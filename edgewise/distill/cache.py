"""The teacher's outputs (logits, sentence vectors), computed once per (teacher, task, texts, max length) and
kept on disk."""

from __future__ import annotations

import hashlib
import json
import os
import time

from edgewise.core.env import cache_dir


def outputs_key(teacher_id: str, task: dict, texts: list[str], pairs: list[str] | None, max_length: int) -> str:
    """Keyed by the teacher's manifest hash, its task (an encoder pooled two ways gives two sets of vectors), the
    texts' hash and the max length: any change recomputes."""
    digest = hashlib.sha256(json.dumps([teacher_id, task, texts, pairs, max_length], ensure_ascii=False,
                                       sort_keys=True).encode())
    return digest.hexdigest()


def teacher_outputs(teacher, tokenizer, texts, pairs, max_length: int, key: str, task, batch_size: int = 64,
                    use_cache: bool = True, label: str = "teacher outputs") -> tuple:
    """(the task's outputs of the teacher for every text, seconds spent computing them, whether they came from
    the cache)."""
    import numpy as np

    from edgewise.core.progress import progress_bar
    from edgewise.runtime.pytorch import TorchRunner

    path = cache_dir() / "logits" / f"{key}.npy"
    if use_cache and path.is_file():
        try:
            return np.load(path), 0.0, True
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache file is recomputed
    start = time.perf_counter()
    with progress_bar(transient=True) as bar:
        progress = bar.add_task(label, total=len(texts), info="")
        runner = TorchRunner(teacher.eval(), tokenizer, max_length=max_length, task=task,
                             backend="torch-cuda" if teacher.device.type == "cuda" else "torch")  # for time_ms
        outputs = runner.outputs(texts, pairs, batch_size=batch_size, progress=lambda n: bar.advance(progress, n))
    seconds = time.perf_counter() - start
    if use_cache:
        from edgewise.core.errors import EdgewiseError

        partial = path.with_suffix(f".{os.getpid()}.partial.npy")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(partial, outputs)
            partial.rename(path)  # atomic: a reader never sees half a file
        except OSError as e:
            raise EdgewiseError(
                f"cannot write the teacher-output cache in {path.parent} ({e.strerror}); set EDGEWISE_CACHE to a "
                "writable folder"
            ) from None
    return outputs, seconds, False
