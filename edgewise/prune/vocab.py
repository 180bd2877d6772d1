"""Vocabulary pruning: keep the tokens the data uses, shrink the embedding matrix to them, and rewrite
the tokenizer so ids stay consistent.

For MiniLM-L6 the 30,522 x 384 word embedding is about half of all parameters, so on a phone this is
the size win. Kept: every token the training texts (and ``--vocab-extra`` texts) produce, the
special and added tokens, and every single-character piece (``a``, ``##a``), so that an unseen word
still falls apart into pieces instead of [UNK] whenever its characters are known. The pruned
tokenizer.json is WordPiece as before: a word whose pieces are gone tokenizes differently, or to
[UNK], exactly as the runtime will tokenize it (it loads the same file).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgewise.core.errors import EdgewiseError

TOKENIZER_JSON = "tokenizer.json"


def load_tokenizer_json(folder: Path) -> dict:
    path = Path(folder) / TOKENIZER_JSON
    if not path.is_file():
        raise EdgewiseError(f"{folder} has no {TOKENIZER_JSON}; --vocab rewrites a fast (tokenizers) tokenizer: save "
                            "one into the model folder with tokenizer.save_pretrained")
    document = json.loads(path.read_text())
    if (document.get("model") or {}).get("type") != "WordPiece":
        raise EdgewiseError(f"--vocab handles WordPiece tokenizers (BERT family), not "
                            f"{(document.get('model') or {}).get('type')!r}; drop --vocab")
    return document


def _token_ids(folder: Path, texts: list[str], pairs: list[str] | None) -> list[list[int]]:
    """The ids the tokenizer in ``folder`` (the runtime's `tokenizers` one) gives each text, untruncated."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(folder) / TOKENIZER_JSON))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    items = list(zip(texts, pairs, strict=True)) if pairs else list(texts)
    return [encoding.ids for encoding in tokenizer.encode_batch(items)]


def used_ids(folder: Path, texts: list[str], pairs: list[str] | None = None) -> set[int]:
    """Every token id the tokenizer in ``folder`` produces for ``texts`` (no truncation)."""
    return {i for ids in _token_ids(folder, texts, pairs) for i in ids}


def kept_ids(folder: Path, used: set[int]) -> list[int]:
    """The ids to keep, in their old order: ``used``, special and added tokens, single-character pieces."""
    document = load_tokenizer_json(folder)
    vocab = document["model"]["vocab"]
    prefix = document["model"].get("continuing_subword_prefix") or "##"
    keep = set(used) | {t["id"] for t in document.get("added_tokens") or []}
    keep |= {i for token, i in vocab.items() if len(token) == 1 or (token.startswith(prefix)
                                                                    and len(token) == len(prefix) + 1)}
    unk = document["model"].get("unk_token")
    if unk in vocab:
        keep.add(vocab[unk])
    return sorted(keep)


def coverage(folder: Path, texts: list[str], pairs: list[str] | None, keep: list[int]) -> float:
    """The share of the tokens ``texts`` produce (with the full vocabulary) that are kept."""
    kept = set(keep)
    all_ids = [i for ids in _token_ids(folder, texts, pairs) for i in ids]
    return sum(1 for i in all_ids if i in kept) / len(all_ids) if all_ids else 1.0


def rewrite_tokenizer(src: Path, dst: Path, keep: list[int]) -> dict[int, int]:
    """Write tokenizer.json (and vocab.txt, tokenizer_config.json when ``src`` has them) for the kept
    ids into ``dst``, renumbered 0..len(keep)-1 in their old order. Returns old id -> new id."""
    document = load_tokenizer_json(src)
    new_id = {old: new for new, old in enumerate(keep)}
    vocab = document["model"]["vocab"]
    document["model"]["vocab"] = {token: new_id[i] for token, i in sorted(vocab.items(), key=lambda kv: kv[1])
                                  if i in new_id}
    for token in document.get("added_tokens") or []:
        token["id"] = new_id[token["id"]]
    processor = document.get("post_processor") or {}
    for special in (processor.get("special_tokens") or {}).values():
        special["ids"] = [new_id[i] for i in special.get("ids", [])]
    if processor.get("type") in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            token, old = processor[key]
            processor[key] = [token, new_id[old]]
    if document.get("padding"):
        document["padding"]["pad_id"] = new_id.get(document["padding"].get("pad_id", 0), 0)
    dst = Path(dst)
    (dst / TOKENIZER_JSON).write_text(json.dumps(document, ensure_ascii=False, indent=2))
    if (Path(src) / "vocab.txt").is_file():
        ordered = sorted(document["model"]["vocab"].items(), key=lambda kv: kv[1])
        (dst / "vocab.txt").write_text("".join(token + "\n" for token, _ in ordered))
    config = Path(src) / "tokenizer_config.json"
    if config.is_file():
        values = json.loads(config.read_text())
        decoder = values.get("added_tokens_decoder") or {}
        values["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items() if int(k) in new_id}
        (dst / "tokenizer_config.json").write_text(json.dumps(values, ensure_ascii=False, indent=2))
    return new_id


def shrink_embeddings(model, keep: list[int], new_id: dict[int, int]) -> None:
    """Keep only the rows of the word embedding for ``keep``; the config's vocab_size and pad id follow."""
    import torch

    embeddings = model.get_input_embeddings()
    index = torch.tensor(keep, dtype=torch.long)
    pad = model.config.pad_token_id
    smaller = torch.nn.Embedding(len(keep), embeddings.embedding_dim,
                                 padding_idx=new_id.get(pad) if pad is not None else None)
    with torch.no_grad():
        smaller.weight.copy_(embeddings.weight[index])
    model.set_input_embeddings(smaller)
    model.config.vocab_size = len(keep)
    if pad is not None:
        model.config.pad_token_id = new_id[pad]
