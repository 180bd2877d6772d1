"""Artifacts are directories; stages read one and write another, atomically."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import MANIFEST_NAME, Manifest

# Files that travel with every derived artifact so it can tokenize and name its labels.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
)
# What the filesystem refuses while a stage writes, and the fix: one Error line, not a traceback.
FILESYSTEM_ERRORS = {
    errno.ENOSPC: "free some space there or choose another output folder with -o",
    errno.EDQUOT: "your disk quota is full: free some space or choose another output folder with -o",
    errno.EROFS: "that file system is read-only: choose another output folder with -o",
    errno.EACCES: "make the folder writable (and its inputs readable) or choose another output folder with -o",
    errno.EPERM: "make the folder writable or choose another output folder with -o",
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def read_json(path: Path) -> dict:
    """A JSON object file (config.json, tokenizer_config.json, labels.json); {} when missing or unreadable."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def detect_kind(path: Path) -> str | None:
    """The kind of a model folder that may not have been written by edgewise."""
    if (path / "config.json").is_file() and any((path / f).is_file() for f in WEIGHT_FILES + PICKLE_FILES):
        return "hf"
    if (path / "model.onnx").is_file():
        return "onnx"
    if (path / "model.ort").is_file():
        return "ort"
    return None


def foreign_task(folder: Path) -> EdgewiseError | None:
    """The error for a transformers folder edgewise cannot use, read from its config.json: one whose classes
    are its own Python code (auto_map: loading it would run that code, which edgewise never does), or one of
    another task (images, speech, sequence-to-sequence, text generation); None for a text encoder or classifier."""
    config = read_json(folder / "config.json")
    for name in ("config.json", "tokenizer_config.json"):
        if auto_map := read_json(folder / name).get("auto_map"):
            entries = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
            flat = [v for e in entries for v in (e if isinstance(e, list) else [e]) if isinstance(v, str)]
            code = sorted({v.split("--")[-1].split(".")[0] + ".py" for v in flat}) or ["auto_map"]
            return EdgewiseError(
                f"{folder} brings its own Python code ({', '.join(code)}, named by auto_map in {name}), which "
                "loading it would run; edgewise never runs a model's own code: use a model whose architecture "
                "transformers ships (BERT, DistilBERT, RoBERTa, ...), or convert it to one")
    architectures = " ".join(a for a in config.get("architectures") or [] if isinstance(a, str))
    model_type = config.get("model_type", "unknown type")
    classifier = "ForSequenceClassification" in architectures  # BART's or T5's classifier is one
    if config.get("is_encoder_decoder") and not classifier:
        what = "a sequence-to-sequence (encoder-decoder) model"
    elif "vision_config" in config or {"image_size", "num_channels"} <= set(config) or "Image" in architectures:
        what = "an image model"
    elif "audio" in architectures.lower() or "CTC" in architectures or {"num_mel_bins", "conv_dim"} & set(config):
        what = "a speech model"
    elif architectures.endswith(("ForCausalLM", "LMHeadModel")) and not classifier:
        what = "a text-generation (decoder) model"
    else:
        return None
    return EdgewiseError(f"{folder} is {what} ({model_type}), not a text encoder or classifier; edgewise takes "
                         "encoder text classifiers (BERT, DistilBERT, RoBERTa, ...): fine-tune one, e.g. edgewise "
                         "finetune builtin:all-minilm-l6-v2 DATA -o TEACHER")


DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")


def real_path(path, what: str = "model folder") -> Path:
    """``path`` expanded and resolved; a symlink loop or an unresolvable path is an EdgewiseError."""
    given = Path(path).expanduser()
    try:
        return given.resolve()
    except RuntimeError as e:  # Python 3.11 reports a symlink loop so (3.13: OSError ELOOP)
        raise EdgewiseError(f"{given} is a symlink loop ({e}); point it at a real {what}") from None
    except OSError as e:
        raise EdgewiseError(f"{given} cannot be resolved ({e.strerror or e}); point it at a real {what}") from None


def output_folder(path, what: str = "run folder") -> Path:
    """``path`` resolved, refused when it (or the nearest existing folder above it) is a file: a folder that
    many files go into must be creatable there."""
    path = real_path(path, what)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == path else f"lies inside {folder}, which is a file"
                raise EdgewiseError(f"the {what} {path} {where}; choose a folder with -o")
            break
    return path


def linked_out(folder: Path, sealed: bool) -> EdgewiseError | None:
    """The error for symlinks that could carry a file from outside ``folder`` into what edgewise writes (a
    tokenizer.json linked to ~/.ssh/id_rsa would be copied into every derived artifact, bundle and device).
    edgewise writes no links, so in a folder it sealed (``sealed``) every link is refused; elsewhere only
    links that leave the folder, except a Hugging Face cache snapshot's links into its own blobs/ folder."""
    folder = Path(os.path.realpath(folder))
    # The Hub cache: <repo>/snapshots/<revision>/... links into <repo>/blobs/.
    snapshots = next((p for p in folder.parents if p.name == "snapshots"), None)
    blobs = snapshots.parent / "blobs" if snapshots is not None else None
    found = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            entry = Path(root) / name
            if not entry.is_symlink():
                continue
            target = Path(os.path.realpath(entry))
            inside = target.is_relative_to(folder) or (blobs is not None and target.is_relative_to(blobs))
            if sealed or not inside:
                found.append(f"{entry.relative_to(folder)} -> {os.readlink(entry)}")
    if not found:
        return None
    listed = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    what = ("symlinks, which edgewise never writes (the folder was changed after it was written)" if sealed else
            "symlinks pointing outside it")
    return EdgewiseError(f"{folder} holds {what}: {listed}; edgewise would copy the files they point at into its "
                         f"outputs: if you trust those files, copy the folder with its links resolved (cp -rL "
                         f"{folder} NEW) and use the copy")


def not_a_folder(path: Path) -> EdgewiseError:
    """The error for a file given where a model folder belongs: a data file is most likely a swapped argument."""
    parent = path.parent
    if any((parent / name).is_file() for name in ("config.json", "edgewise.json", "model.onnx", "model.ort")):
        return EdgewiseError(f"{path} is a file of the model folder {parent}; pass the folder itself")
    if path.suffix.lower() in DATA_SUFFIXES:
        return EdgewiseError(f"{path} is a data file, not a model folder: the model comes first and the data after "
                             "it (edgewise COMMAND MODEL DATA); did you swap them?")
    return EdgewiseError(f"{path} is a file; edgewise artifacts are folders (pass the folder holding it)")


@dataclass
class Artifact:
    """A model folder: its path, kind and manifest (None when edgewise did not write it)."""

    path: Path
    kind: str
    manifest: Manifest | None

    @classmethod
    def load(cls, path: Path, kind: str | tuple[str, ...] | None = None, *, verify: bool = True) -> Artifact:
        """Open the artifact at ``path`` (or the built-in model ``builtin:NAME``); check its kind and, if edgewise
        wrote it, its file hashes."""
        from edgewise.core import builtin

        if builtin.is_builtin(str(path)):
            path = builtin.model_path(str(path))[0]
        path = real_path(path)
        if not path.exists():
            raise EdgewiseError(f"model folder {path} does not exist; check the path")
        if not path.is_dir():
            raise not_a_folder(path)
        kinds = (kind,) if isinstance(kind, str) else kind
        sealed = (path / MANIFEST_NAME).exists()
        found = None if sealed else detect_kind(path)
        if not sealed and found is None:  # said before walking it: a wrong folder may be huge ($HOME)
            raise EdgewiseError(
                f"{path} is not a model folder: expected a transformers folder (config.json + "
                "model.safetensors) or an edgewise artifact (edgewise.json)"
            )
        if problem := linked_out(path, sealed=sealed):
            raise problem
        if sealed:
            manifest = Manifest.read(path)
            found = manifest.kind
            if verify and (problems := manifest.verify()):
                raise EdgewiseError(
                    f"{path} changed since edgewise wrote it ({'; '.join(problems[:5])}); "
                    "re-create it with the stage that made it"
                )
        else:
            manifest = None
        if found == "hf" and (problem := foreign_task(path)):
            raise problem
        if kinds and found not in kinds:
            if found == "hf" and "onnx" in kinds:
                fix = f"export it to ONNX first: edgewise export {path} -o {path.with_name(path.name + '-onnx')}"
            elif manifest is not None:  # the artifact this one was made from is the likely fix
                fix = f"pass the {kinds[0]!r} artifact it was made from (edgewise lineage {path} shows the chain)"
            else:
                fix = f"pass the {kinds[0]!r} artifact it was made from"
            needs = " or ".join(map(repr, kinds))
            raise EdgewiseError(f"{path} is a {found!r} artifact; this step needs {needs}: {fix}")
        return cls(path=path, kind=found, manifest=manifest)

    @property
    def labels(self) -> dict[int, str]:
        """id -> label name, from the manifest or the model's config.json."""
        if self.manifest and self.manifest.labels:
            return {int(k): v for k, v in self.manifest.labels.items()}
        id2label = read_json(self.path / "config.json").get("id2label") or {}
        return {int(k): v for k, v in id2label.items()}

    @property
    def task(self):
        """The artifact's task (core.tasks): as its manifest records it, else read from the folder; None for a
        plain encoder (``task_for`` then needs --task)."""
        return self.task_for()

    def task_for(self, config=None, what: str | None = None):
        """The task, with the --task / --pooling / --normalize of ``config`` (core.tasks.TaskConfig) for a folder
        that does not say; an option that contradicts the folder is an EdgewiseError."""
        from edgewise.core.tasks import resolve

        recorded = self.manifest.task if self.manifest is not None else None
        return resolve(self.path, recorded, self.labels, config, what)

    def classifier_labels(self) -> dict[int, str]:
        """The labels; an EdgewiseError saying how to get a classifier when there are none (a base encoder)."""
        if not self.labels:
            hf = self.kind == "hf"
            raise EdgewiseError(
                f"{self.path} names no labels (no id2label in its config): it is an encoder, not a classifier; "
                + (f"fine-tune it into one first: edgewise finetune {self.path} DATA -o TEACHER" if hf else
                   "export a fine-tuned classifier instead (edgewise finetune, then edgewise export)")
            )
        return self.labels

    def describe(self) -> dict:
        """How a manifest refers to this artifact as a source."""
        if self.manifest is not None:
            return {"path": str(self.path), "manifest_sha256": self.manifest.sha256, "kind": self.kind}
        from edgewise.core.manifest import hash_files

        return {"path": str(self.path), "kind": self.kind, "files": hash_files(self.path)}


def carry_forward(src: Path, dst: Path) -> list[str]:
    """Copy tokenizer files and config.json (the label map, the model's limits) from ``src`` to ``dst``
    without replacing what the stage wrote."""
    copied = []
    for name in (*TOKENIZER_FILES, "config.json"):
        if (src / name).is_file() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied


class OutputDir:
    """Where a stage writes: a work folder next to ``dst``, renamed into place only when complete.

    The work folder ``.<name>.partial`` holds ``artifact/`` (the output being written) and, for
    stages that can resume, their checkpoints. A crash or kill leaves no folder at ``dst``.
    """

    def __init__(self, dst: Path, work: Path):
        self.dst = dst
        self.work = work
        self.artifact = work / "artifact"

    @staticmethod
    def work_folder(dst: Path) -> Path:
        """The work folder of the output ``dst`` (where an interrupted stage left its checkpoints)."""
        return Path(dst).parent / f".{Path(dst).name}.partial"

    @classmethod
    def prepare(
        cls,
        dst: Path,
        *,
        sources: tuple[Path, ...] = (),
        overwrite: bool = False,
        resumable: bool = False,
        resume: bool = False,
        marker: str = MANIFEST_NAME,
    ) -> OutputDir:
        """Check ``dst`` before any heavy work; nothing is created until ``begin``."""
        dst = output_folder(dst, "output folder")
        for src in sources:
            src = real_path(src)
            if dst == src:
                raise EdgewiseError(f"the output {dst} is the input; choose another output folder with -o")
            if src.is_relative_to(dst) or dst.is_relative_to(src):
                raise EdgewiseError(
                    f"the output {dst} and the input {src} are nested; a stage never writes into its "
                    "input: choose an output folder outside it"
                )
        if dst.exists() and any(dst.iterdir()):
            if not overwrite:
                raise EdgewiseError(
                    f"the output {dst} already exists; pass --overwrite to replace it or choose another -o"
                )
            if not (dst / marker).exists():
                raise EdgewiseError(
                    f"the output {dst} is not empty and was not written by edgewise (no {marker}); "
                    "edgewise only replaces its own outputs: remove it yourself or choose another -o"
                )
        out = cls(dst, cls.work_folder(dst))
        if out.work.exists() and resumable and not resume and not overwrite:
            raise EdgewiseError(
                f"an interrupted run left {out.work}; pass --resume to continue it or --overwrite to start over"
            )
        if resume and not out.work.exists():
            raise EdgewiseError(f"nothing to resume: no interrupted run at {out.work}; run without --resume")
        return out

    def begin(self, resume: bool = False) -> None:
        """Create the work folder (after every check has passed); keep checkpoints when resuming."""
        try:
            if self.work.exists() and not resume:
                shutil.rmtree(self.work)
            if self.artifact.exists():
                shutil.rmtree(self.artifact)
            self.artifact.mkdir(parents=True)
        except OSError as e:
            fix = FILESYSTEM_ERRORS.get(e.errno, "choose another output folder with -o")
            raise EdgewiseError(f"cannot create the output next to {self.dst} ({e.strerror}: {e.filename}); "
                                f"{fix}") from None

    def commit(self) -> Path:
        """Move the finished artifact to ``dst`` (replacing an old one) and remove the work folder."""
        replaced = self.work / "replaced"
        if self.dst.exists():
            self.dst.rename(replaced)
        try:
            self.artifact.rename(self.dst)
        except OSError:
            if replaced.exists():
                replaced.rename(self.dst)  # put the old artifact back before anything removes the work folder
            raise
        shutil.rmtree(self.work)
        return self.dst

    def abort(self, keep_checkpoints: bool = False) -> None:
        """Remove what was written; keep the work folder if it holds checkpoints to resume from."""
        if keep_checkpoints:
            shutil.rmtree(self.artifact, ignore_errors=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
