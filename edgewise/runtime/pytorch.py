"""The torch backends: `hf` and `inc` artifacts run in PyTorch, on the CPU (torch) or a GPU (torch-cuda).

torch and transformers are imported inside the functions that use them, so importing this module
(and edgewise.runtime) stays light.
"""

from __future__ import annotations

from pathlib import Path

from edgewise.core.artifact import read_json
from edgewise.core.lengths import artifact_lengths
from edgewise.core.tasks import refuse_unless
from edgewise.runtime.base import Runner, Unavailable, folder_task, read_manifest, verify_folder


class TorchRunner(Runner):
    """A loaded model (transformers, or an INC model) and its tokenizer, as a Runner; ``task`` (default: a
    classifier) says what its forward's output is (core.tasks).

    ``run`` takes feeds of torch tensors (as ``encode`` and ``synthetic`` make them) or of numpy
    arrays (export's parity batches), which it moves to the model's device.
    """

    def __init__(self, model, tokenizer=None, *, backend: str = "torch", max_length: int | None = None,
                 id2label: dict[int, str] | None = None, info: dict | None = None, task=None):
        import torch

        from edgewise.core.tasks.classification import Classification

        self.torch = torch
        self.model = model
        self.task = task if task is not None else Classification()
        self.tokenizer = tokenizer
        self.backend = backend
        self.max_length = max_length
        # Inputs go where the model is (a teacher on the Trainer's device, which may be MPS or XPU).
        self.device = getattr(model, "device", None) or torch.device("cuda" if backend == "torch-cuda" else "cpu")
        labels = id2label if id2label is not None else getattr(model.config, "id2label", None) or {}
        self.id2label = {int(k): v for k, v in labels.items()}
        self.info = info if info is not None else {"device": "cpu", "torch_threads": torch.get_num_threads()}

    def _inputs(self, feed: dict) -> dict:
        from edgewise.core.models import model_inputs

        return {k: v.to(self.device) for k, v in model_inputs(self.model, feed).items()}

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict:
        batch = self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length, padding=True,
                               return_tensors="pt")
        return self._inputs(batch)

    def token_offsets(self, texts: list[str]) -> list[tuple[list, list]]:
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_offsets_mapping=True,
                               return_special_tokens_mask=True)
        return list(zip(batch["offset_mapping"], batch["special_tokens_mask"], strict=True))

    def synthetic(self, batch_size: int, seq_len: int) -> dict:
        torch = self.torch
        vocab = self.model.config.vocab_size
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(min(1000, vocab // 2), vocab, (batch_size, seq_len), generator=generator)
        return self._inputs({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                             "token_type_ids": torch.zeros_like(ids)})

    def run(self, feed: dict):
        torch = self.torch
        tensors = {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(v).to(self.device)
                   for k, v in feed.items()}
        with torch.inference_mode():
            return self.task.output(self.model, tensors)

    def scores(self, feed: dict):
        return self.run(feed).float().cpu().numpy()

    def time_ms(self, feed: dict) -> float:
        if self.backend != "torch-cuda":
            return super().time_ms(feed)
        # Kernels run asynchronously: CUDA events measure the GPU's time, not the launch's.
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.run(feed)
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))


def model_runner(model, backend: str = "torch", task=None) -> TorchRunner:
    """A runner of an already-loaded model, for numpy feeds (export's parity reference)."""
    return TorchRunner(model.eval(), backend=backend, task=task)


def open_torch(folder: Path, kind: str, backend: str, *, threads: int | None = None, max_length: int | None = None,
               verify: bool = True, allow_pickle: bool = False, task=None) -> TorchRunner:
    """The runner of the `hf` or `inc` artifact in ``folder`` (runners.open_runner calls this).

    `hf` weights are loaded strictly (a missing weight is an error, not a random value) and
    safetensors only unless ``allow_pickle``; INC models run on the CPU only.
    """
    try:
        import torch
        import transformers  # noqa: F401  - the tokenizer and the hf model need it
    except ImportError as e:
        raise Unavailable(f"{e.name} is not installed: pip install 'edgewise[full]'") from None
    cuda = backend == "torch-cuda"
    if cuda and kind == "inc":
        raise Unavailable("INC INT8 models run on the CPU (oneDNN kernels); use --backend torch")
    if cuda and not torch.cuda.is_available():
        raise Unavailable("no CUDA GPU is visible to torch; use --backend torch (CPU)")
    from edgewise.core.models import ModelSource, load_tokenizer

    if verify:
        verify_folder(folder)
    if threads:
        torch.set_num_threads(threads)
    recorded = read_manifest(folder)
    length, _ = artifact_lengths(folder, recorded.get("data") or {}, max_length)
    source = ModelSource(str(folder), str(folder), True)
    tokenizer = load_tokenizer(source)
    named = recorded.get("labels") or read_json(folder / "config.json").get("id2label") or {}
    task = refuse_unless(folder_task(folder, recorded, named, task),
                         ("classification", "embedding", "token-classification"), str(folder),
                         "running a model")
    if kind == "inc":
        from edgewise.runtime.inc import QuantizedClassifier

        model = QuantizedClassifier(folder)
    else:  # the task's loader refuses pickle weights unless allowed
        model = task.load(source, allow_pickle).to("cuda" if cuda else "cpu").eval()
    labels = recorded.get("labels") or None
    info = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch_threads": torch.get_num_threads()}
    return TorchRunner(model, tokenizer, backend=backend, max_length=length, id2label=labels, info=info, task=task)


