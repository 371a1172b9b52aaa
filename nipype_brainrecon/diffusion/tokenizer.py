"""A CLIP-style byte-level BPE tokenizer, written without a hub.

:func:`build_clip_tokenizer` writes a tokenizer folder that ``CLIPTokenizer.from_pretrained``
loads, optionally with merges learnt from the stimulus captions (:func:`learn_bpe_merges`), so a
small model's 77-token context holds whole captions.
"""

from __future__ import annotations

import heapq
import json
import os
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError
from ..io import atomic_write_text

BOS_TOKEN = "<|startoftext|>"


EOS_TOKEN = "<|endoftext|>"


END_OF_WORD = "</w>"

# CLIP's pre-tokenisation: contractions, runs of letters, single digits, runs of other symbols.
_CLIP_WORD_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Map each of the 256 byte values to a printable unicode character (byte-level BPE).

    Bytes that are printable Latin-1 characters map to themselves; the others (control
    characters, space, ...) are moved past U+00FF in increasing order, so every byte has a
    visible, whitespace-free symbol and merges can be written one per line.

    Returns
    -------
    dict
        ``{byte value: character}`` with 256 distinct characters.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return dict(sorted(table.items()))


def _clip_words(texts: Iterable[str]) -> Counter[str]:
    """Count byte-level words of ``texts`` exactly as CLIP's tokenizer splits them."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    splitter = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    counts: Counter[str] = Counter()
    for text in texts:
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)):
            if word not in (BOS_TOKEN, EOS_TOKEN):
                counts[word] += 1
    return counts


def learn_bpe_merges(
    texts: Iterable[str], n_merges: int, *, min_frequency: int = 2
) -> list[tuple[str, str]]:
    """Learn byte-level BPE merges (CLIP style, ``</w>`` marks a word end) from texts.

    Greedy: repeatedly merge the most frequent adjacent symbol pair; ties go to the
    lexicographically smallest pair, so the result is deterministic.

    Parameters
    ----------
    texts : iterable of str
        The training corpus (e.g. all captions of the stimulus set).
    n_merges : int
        Maximum number of merges to learn.
    min_frequency : int
        Stop when the best pair occurs fewer times than this.

    Returns
    -------
    list of (str, str)
        The merges in priority order.
    """
    words = _clip_words(texts)
    symbols: list[list[str]] = []
    freqs: list[int] = []
    for word, freq in sorted(words.items()):
        parts = list(word)
        parts[-1] += END_OF_WORD
        symbols.append(parts)
        freqs.append(freq)

    pair_counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for idx, parts in enumerate(symbols):
        for pair in zip(parts, parts[1:], strict=False):
            pair_counts[pair] += freqs[idx]
            where.setdefault(pair, set()).add(idx)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while heap and len(merges) < n_merges:
        neg, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg:
            continue  # stale heap entry
        if -neg < min_frequency:
            break
        merges.append(pair)
        first, second = pair
        joined = first + second
        changed: set[tuple[str, str]] = set()
        for idx in sorted(where.pop(pair, ())):
            parts, freq = symbols[idx], freqs[idx]
            for old in zip(parts, parts[1:], strict=False):
                pair_counts[old] -= freq
                changed.add(old)
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(joined)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            symbols[idx] = merged
            for new in zip(merged, merged[1:], strict=False):
                pair_counts[new] += freq
                where.setdefault(new, set()).add(idx)
                changed.add(new)
        pair_counts.pop(pair, None)
        for other in changed:
            count = pair_counts.get(other, 0)
            if count > 0:
                heapq.heappush(heap, (-count, other))
            else:
                pair_counts.pop(other, None)
    return merges


def build_clip_tokenizer(
    out_dir: str | os.PathLike,
    *,
    captions: Iterable[str] | None = None,
    vocab_size: int | None = None,
    model_max_length: int = 77,
) -> Path:
    """Write a CLIP byte-level BPE tokenizer folder that ``CLIPTokenizer.from_pretrained`` loads.

    The vocabulary holds the 256 byte symbols, the same 256 with ``</w>`` (word end), then the
    merges learnt from ``captions`` (if any), then ``<|startoftext|>`` and ``<|endoftext|>``
    (also the padding and unknown token), the layout of OpenAI's CLIP vocabulary. Without
    captions every character is one token (514 entries); with captions frequent words become
    single tokens, so a 77-token context holds whole captions.

    Parameters
    ----------
    out_dir : path
        Folder to create (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``).
    captions : iterable of str, optional
        Corpus to learn merges from.
    vocab_size : int, optional
        Total vocabulary size with captions (default 4096); ignored without captions.
    model_max_length : int
        Context length (77 for SD v1).

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    byte_chars = list(bytes_to_unicode().values())
    merges: list[tuple[str, str]] = []
    if captions is not None:
        target = 4096 if vocab_size is None else int(vocab_size)
        if target < 2 * 256 + 2:
            raise UsageError(f"vocab_size={target}: must be at least 514 (bytes + specials)")
        merges = learn_bpe_merges(captions, target - (2 * 256 + 2))
    vocab: dict[str, int] = {}
    for token in [*byte_chars, *(c + END_OF_WORD for c in byte_chars)]:
        vocab[token] = len(vocab)
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    vocab[BOS_TOKEN] = len(vocab)
    vocab[EOS_TOKEN] = len(vocab)

    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": int(model_max_length),
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    atomic_write_text(
        out / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    )
    atomic_write_text(out / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    return out
