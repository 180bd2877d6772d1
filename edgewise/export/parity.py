"""Parity checks: the exported model must give its source's logits on real and generated inputs."""

from __future__ import annotations

from collections.abc import Callable

from edgewise.core.errors import EdgewiseError

# Reduced precision (FP16, INT8) differs from FP32 by design: it is judged by how often labels agree, and an
# embedding model's by the cosine between its vectors and the source's.
REDUCED_PRECISION_AGREEMENT = 0.98
# The lowest cosine to the source's vector accepted of any parity input: a broken conversion gives unrelated
# vectors (cosine near 0); dynamic INT8 of the MiniLM embedding teacher stays above 0.98 on every text of
# benchmarks/results/embedding_minilm.json.
REDUCED_PRECISION_COSINE = 0.95
VECTOR_OUTPUTS = ("sentence_embedding",)  # outputs that are sentence vectors (core.tasks.embedding)

# Shapes (batch, tokens) of the generated inputs used when no data is given.
GENERATED_SHAPES = ((1, 8), (2, 17), (4, None))  # None: the model's max_length


def text_batches(encode: Callable, texts: list[str], pairs: list[str] | None, batch_size: int = 8) -> list[dict]:
    """Model inputs for the texts, in batches of mixed lengths (so padding is exercised)."""
    return [
        encode(texts[i:i + batch_size], pairs[i:i + batch_size] if pairs else None)
        for i in range(0, len(texts), batch_size)
    ]


def token_batch(rng, input_names, vocab_size: int, pad_id: int, length: int, keep: list[int]) -> dict:
    """One batch of random token ids, ``length`` long, row i keeping its first ``keep[i]`` tokens and padded
    after them; only the inputs in ``input_names``."""
    import numpy as np

    ids = rng.integers(low=min(1000, vocab_size // 2), high=vocab_size, size=(len(keep), length), dtype=np.int64)
    mask = np.ones_like(ids)
    for row, kept in enumerate(keep):
        ids[row, kept:], mask[row, kept:] = pad_id, 0
    columns = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: columns[name] for name in input_names}


def generated_batches(input_names, vocab_size: int, max_length: int, pad_id: int, seed: int = 0) -> list[dict]:
    """Random token ids of several shapes, the later rows of each batch padded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    batches = []
    for batch, length in GENERATED_SHAPES:
        length = min(length or max_length, max_length)
        keep = [length] + [max(2, length - row * length // (batch + 1)) for row in range(1, batch)]
        batches.append(token_batch(rng, input_names, vocab_size, pad_id, length, keep))
    return batches


def compare(reference: Callable, candidate: Callable, batches: list[dict], output: str | None = None) -> dict:
    """Run both on every batch: max / mean |difference| and how often their argmax labels agree; for sentence
    vectors (``output`` in VECTOR_OUTPUTS; default: the scorer's ``output``, else logits) the lowest and mean
    cosine between the two sides' vectors instead of label agreement.

    A shape mismatch is fatal at once; tolerance is judged by ``check``. NaN and inf values are
    counted per side and make the differences inf: a NaN would otherwise vanish from a running
    max, since max(x, nan) is x.
    """
    import numpy as np

    output = output or getattr(reference, "output", None) or getattr(candidate, "output", None) or "logits"
    vectors = output in VECTOR_OUTPUTS
    cosines = []
    max_diff, total_diff, values, agree, samples = 0.0, 0.0, 0, 0, 0
    nonfinite = {side: {"nan": 0, "inf": 0} for side in ("candidate", "reference")}
    for batch in batches:
        ref, cand = np.asarray(reference(batch), dtype=np.float64), np.asarray(candidate(batch), dtype=np.float64)
        if ref.shape != cand.shape:
            raise EdgewiseError(
                f"output {output!r} has shape {cand.shape} in the exported model but {ref.shape} in its source; "
                "the export is broken: re-export (a different --opset may help)"
            )
        for side, logits in (("candidate", cand), ("reference", ref)):
            nonfinite[side]["nan"] += int(np.isnan(logits).sum())
            nonfinite[side]["inf"] += int(np.isinf(logits).sum())
        diff = np.abs(ref - cand)
        diff[~np.isfinite(diff)] = np.inf
        max_diff = max(max_diff, float(diff.max()) if diff.size else 0.0)
        total_diff += float(diff.sum())
        values += diff.size
        agree += int((ref.argmax(-1) == cand.argmax(-1)).sum())
        samples += ref.shape[0]
        if vectors:
            norms = np.maximum(np.linalg.norm(ref, axis=-1) * np.linalg.norm(cand, axis=-1), 1e-12)
            cosines += ((ref * cand).sum(-1) / norms).tolist()
    result = {
        "outputs": {output: {"max_abs_diff": max_diff, "mean_abs_diff": total_diff / max(values, 1),
                             "values": values, "nonfinite": nonfinite}},
        "max_abs_diff": max_diff,
        "label_agreement": agree / max(samples, 1),
        "samples": samples,
        "batches": len(batches),
    }
    if vectors:  # an argmax over a vector's dimensions means nothing: the cosine says how alike they are
        del result["label_agreement"]
        result["cosine_min"] = float(np.nanmin(cosines)) if cosines else 1.0
        result["cosine_mean"] = float(np.nanmean(cosines)) if cosines else 1.0
    return result


def _nonfinite(counts: dict, values: int) -> str | None:
    """'NaN logits (3 of 21 values NaN)' or None when every value is finite."""
    if not counts["nan"] and not counts["inf"]:
        return None
    found = ", ".join(f"{counts[key]} of {values} values {word}" for key, word in (("nan", "NaN"), ("inf", "inf"))
                      if counts[key])
    return f"{'NaN' if counts['nan'] else 'infinite'} logits ({found})"


def check(result: dict, atol: float, what: str) -> None:
    """An error listing every output with NaN / inf values or whose largest difference exceeds ``atol``."""
    for name, v in result["outputs"].items():
        counts = v.get("nonfinite")
        if counts is None:
            continue
        candidate = _nonfinite(counts["candidate"], v["values"])
        reference = _nonfinite(counts["reference"], v["values"])
        if candidate:
            cause = ("its source does too: the source model itself is broken (weights with NaN, or overflow), so "
                     "fix or re-create it" if reference else
                     "its source does not, so the conversion broke it: re-export (a different --opset may help) "
                     "and check the precision")
            raise EdgewiseError(f"{what} produces {candidate} in output {name!r}; {cause}")
        if reference:
            raise EdgewiseError(
                f"the source of {what} produces {reference} in output {name!r}, so the two cannot be compared: "
                "fix or re-create the source model, or pass --no-verify to keep it unchecked"
            )
    missed = [f"{name}: max |diff| {v['max_abs_diff']:.3g}" for name, v in result["outputs"].items()
              if not v["max_abs_diff"] <= atol]
    if missed:
        raise EdgewiseError(
            f"{what} does not match its source within atol {atol:g} ({'; '.join(missed)}; {_agreement(result)}); "
            "raise --atol if that is acceptable, or pass --no-verify to keep it unchecked"
        )


def _agreement(result: dict) -> str:
    if "cosine_min" in result:
        return f"cosine to the source's vectors {result['cosine_min']:.4f} at the lowest of {result['samples']} inputs"
    return f"labels agree on {result['label_agreement']:.1%} of {result['samples']} inputs"


def parity_line(what: str, result: dict) -> str:
    """The one-line summary of a parity result that export prints."""
    agreement = (f"cosine min {result['cosine_min']:.6f}" if "cosine_min" in result else
                 f"labels agree {result['label_agreement']:.2%}")
    return f"{what}: max |diff| {result['max_abs_diff']:.2e}, {agreement} on {result['samples']} inputs"


def check_agreement(result: dict, what: str, fix: str) -> None:
    """The gate of a reduced-precision model: no NaN / inf outputs (a NaN row's argmax is 0, which can still
    "agree" often on skewed data) and labels agreeing with the source on REDUCED_PRECISION_AGREEMENT of inputs, or
    sentence vectors whose cosine to the source's is at least REDUCED_PRECISION_COSINE on every input."""
    check(result, float("inf"), what)
    if "cosine_min" in result:
        if result["cosine_min"] < REDUCED_PRECISION_COSINE:
            raise EdgewiseError(
                f"{what} gives vectors whose cosine to its source's falls to {result['cosine_min']:.3f} (at least "
                f"{REDUCED_PRECISION_COSINE} expected on every one of {result['samples']} inputs); {fix}")
        return
    if result["label_agreement"] < REDUCED_PRECISION_AGREEMENT:
        raise EdgewiseError(
            f"{what} agrees with its source on only {result['label_agreement']:.1%} of {result['samples']} inputs "
            f"(at least {REDUCED_PRECISION_AGREEMENT:.0%} expected; max |diff| {result['max_abs_diff']:.3g}); {fix}"
        )
