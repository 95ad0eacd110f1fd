"""The course's text corpus: real, redistributable prose and poetry in English and Chinese, offline.

About 2.5 MB of UTF-8 text in `source_data/corpus/`, one file per source, paragraphs (or whole
poems) separated by one blank line. Lessons 01 (BPE), 02 (embeddings), 05, 06 and 10-13 read it:

| file stem             | lang | what                                                   |
| --------------------- | ---- | ------------------------------------------------------ |
| `moby_dick`           | en   | Herman Melville, Moby-Dick (1851), the 135 chapters    |
| `pride_and_prejudice` | en   | Jane Austen, Pride and Prejudice (1813)                |
| `botchan`             | en   | Natsume Soseki, Botchan, tr. Yasotaro Morri (1919)     |
| `tang_poems`          | zh   | 唐诗三百首, 353 Tang poems (traditional characters)     |
| `song_ci`             | zh   | 宋词三百首, 280 Song lyrics (simplified characters)     |
| `lunyu`               | zh   | 论语, the Analects (simplified characters)              |
| `mengzi`              | zh   | 孟子, Mencius (traditional characters)                  |

Chinese is about 15% of the bytes but only about 6% of the characters: each CJK character is three
UTF-8 bytes, which is exactly what a byte-level BPE tokenizer has to learn to merge.

`load_corpus()` returns a `datasets.DatasetDict` built in memory (no cache files, no hub). Its rows
are those that `datasets.load_dataset("text", data_files=..., sample_by="paragraph")` reads from each
file, except that the file's final newline is not kept on its last paragraph.

Split rule, per file, by position, no randomness: paragraph number `i` (counting from 0 in file
order) goes to "validation" when `i % 10 == 9`, otherwise to "train", so every tenth paragraph (or
poem) is held out and each source is about 10% validation. Origins, licences, sizes and the
cleaning are recorded in `source_data/README.md`; `source_data/build_corpus.py` rebuilds the files.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from course import REPO

if TYPE_CHECKING:
    import datasets

CORPUS_DIR = REPO / "source_data" / "corpus"

# file stem -> language, in the order rows appear in each split
SOURCES: dict[str, str] = {
    "moby_dick": "en",
    "pride_and_prejudice": "en",
    "botchan": "en",
    "tang_poems": "zh",
    "song_ci": "zh",
    "lunyu": "zh",
    "mengzi": "zh",
}
SPLITS = ("train", "validation")
VALIDATION_EVERY = 10  # paragraph i of a file is validation when i % 10 == 9


def paragraphs(stem: str) -> list[str]:
    """The paragraphs (or poems) of `source_data/corpus/<stem>.txt`, in file order.

    Args:
        stem: a key of SOURCES, e.g. "moby_dick".
    """
    text = (CORPUS_DIR / f"{stem}.txt").read_text(encoding="utf-8")
    return text.removesuffix("\n").split("\n\n")


def split_of(index: int) -> str:
    """The split of the paragraph at position `index` (from 0) of its file: every tenth is validation.

    Args:
        index: the paragraph's position in its file, counting from 0.
    """
    return "validation" if index % VALIDATION_EVERY == VALIDATION_EVERY - 1 else "train"


@functools.cache
def load_corpus() -> datasets.DatasetDict:
    """Splits "train" and "validation". Columns: "text" (one paragraph or poem per row), "source"
    (file stem, e.g. "moby_dick"), "lang" ("en" or "zh").

    Built with `datasets.Dataset.from_dict` over the local files: offline, no hub, in memory (nothing
    is written to disk). Rows keep file order, files in the order of SOURCES; paragraph `i` of each
    file is in "validation" when `i % 10 == 9`, else in "train". Cached: repeated calls return the
    same object, so treat it as read-only (`.map`, `.filter` and `.select` return new datasets).
    """
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    columns = {split: {"text": [], "source": [], "lang": []} for split in SPLITS}
    for stem, lang in SOURCES.items():
        for i, text in enumerate(paragraphs(stem)):
            col = columns[split_of(i)]
            col["text"].append(text)
            col["source"].append(stem)
            col["lang"].append(lang)
    features = datasets.Features({name: datasets.Value("string") for name in ("text", "source", "lang")})
    return datasets.DatasetDict({split: datasets.Dataset.from_dict(columns[split], features=features)
                                 for split in SPLITS})


@functools.cache
def corpus_text(split: str = "train", lang: str | None = None) -> str:
    """All rows of a split (optionally one language) joined by "\\n\\n".

    Args:
        split: "train" or "validation".
        lang: "en" or "zh" for one language, None for both.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if lang not in (None, *sorted(set(SOURCES.values()))):
        raise ValueError(f"lang must be 'en', 'zh' or None, not {lang!r}")
    rows = load_corpus()[split].to_dict()  # plain lists: much faster than iterating a Column
    texts = rows["text"] if lang is None else [t for t, g in zip(rows["text"], rows["lang"]) if g == lang]
    return "\n\n".join(texts)
