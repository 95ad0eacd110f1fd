"""The committed text corpus (`source_data/corpus/`), its README and the loader `course.data`."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pytest

from course import REPO
from course.data import CORPUS_DIR, SOURCES, corpus_text, load_corpus, paragraphs, split_of

README = REPO / "source_data" / "README.md"
LICENSES = REPO / "source_data" / "LICENSES.md"
FILES = sorted(CORPUS_DIR.glob("*.txt"))
CJK = re.compile(r"[\u4e00-\u9fff]")


def readme_rows() -> dict[str, list[str]]:
    """The corpus table of the README: file name -> its cells."""
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `(\w+\.txt)` \|", line)
        if m:
            rows[m.group(1)] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


def readme_checksums() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\w+\.txt)$", text, re.M)}


def rows(split: str) -> list[tuple[str, str, str]]:
    columns = load_corpus()[split].to_dict()
    return list(zip(columns["source"], columns["lang"], columns["text"]))


# ------------------------------------------------------------------------------------ the files
def test_every_source_has_its_file_and_every_file_is_a_source():
    assert {f.stem for f in FILES} == set(SOURCES)
    assert set(SOURCES.values()) == {"en", "zh"}


def test_every_corpus_file_is_listed_in_the_readme_with_its_size_paragraphs_and_checksum():
    table, sums = readme_rows(), readme_checksums()
    assert set(table) == {f.name for f in FILES}, "README table and corpus/ disagree"
    assert set(sums) == {f.name for f in FILES}, "README checksums and corpus/ disagree"
    for f in FILES:
        data = f.read_bytes()
        *_, size, count = table[f.name]
        assert int(size) == len(data), f"{f.name}: README says {size} bytes, the file has {len(data)}"
        assert int(count) == len(paragraphs(f.stem)), f"{f.name}: README paragraph count is stale"
        assert sums[f.name] == hashlib.sha256(data).hexdigest(), f"{f.name}: README sha256 is stale"


def test_readme_names_licence_origin_and_build_script_for_each_file():
    text = README.read_text(encoding="utf-8")
    assert "build_corpus.py" in text and (REPO / "source_data" / "build_corpus.py").exists()
    assert LICENSES.exists() and "Copyright (c) 2016 JackeyGao" in LICENSES.read_text(encoding="utf-8")
    for name, cells in readme_rows().items():
        origin, licence = cells[3], cells[4]
        assert re.search(r"(npm|PyPI|Debian) `[^`]+` \d", origin), f"{name}: no package and version"
        assert re.search(r"public domain|MIT|CC0|PDDL", licence), f"{name}: no licence"
    assert "i % 10 == 9" in text, "the README states the split rule"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_file_format_utf8_lf_one_blank_line_between_paragraphs(path):
    data = path.read_bytes()
    text = data.decode("utf-8")  # strict: invalid UTF-8 raises
    assert not text.startswith("\ufeff"), "byte-order mark"
    assert "\r" not in text and "\t" not in text
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\n\n\n" not in text, "more than one blank line between paragraphs"
    assert unicodedata.is_normalized("NFC", text)
    for p in paragraphs(path.stem):
        assert p and p == p.strip(), f"empty paragraph or edge whitespace: {p[:60]!r}"
        assert all(line == line.strip() for line in p.split("\n")), f"edge whitespace in {p[:60]!r}"


def test_total_size_is_1_to_5_mb_and_chinese_is_10_to_20_percent_of_the_bytes():
    sizes = {f.stem: f.stat().st_size for f in FILES}
    total = sum(sizes.values())
    assert 1_000_000 <= total <= 5_000_000, total
    zh = sum(size for stem, size in sizes.items() if SOURCES[stem] == "zh")
    assert 0.10 <= zh / total <= 0.20, zh / total


BOILERPLATE = [r"gutenberg", r"\*\*\*", r"\be-?book", r"www\.", r"https?:", r"^produced by",
               r"end of the project", r"transcriber", r"\x1b\[", r"^\[[A-Z]:", r"\[[A-Z]\]", r"copyright",
               r"all rights reserved", r"permission is hereby granted", r"^\s*\* \* \*"]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_no_licence_or_distributor_boilerplate_is_left(path):
    text = path.read_text(encoding="utf-8")
    for pattern in BOILERPLATE:
        hit = re.search(pattern, text, re.I | re.M)
        assert hit is None, f"{path.name}: {pattern!r} at {text[max(0, hit.start() - 40):hit.end() + 40]!r}"
    assert "_" not in text, "italics markup or other underscores left"


def test_the_texts_begin_and_end_where_the_readme_says():
    first = {stem: paragraphs(stem)[0] for stem in SOURCES}
    assert first["moby_dick"] == "CHAPTER 1. Loomings."
    assert first["pride_and_prejudice"] == "PRIDE AND PREJUDICE"
    assert first["botchan"] == "BOTCHAN (MASTER DARLING)"
    assert paragraphs("botchan")[-1] == "--(THE END)--"
    assert first["lunyu"] == "学而篇" and first["mengzi"] == "梁惠王上"
    assert first["tang_poems"].startswith("《") and first["song_ci"].startswith("《")


# ------------------------------------------------------------------------------------ the loader
def test_load_corpus_has_two_nonempty_splits_with_the_documented_columns():
    corpus = load_corpus()
    assert set(corpus) == {"train", "validation"}
    for split in corpus.values():
        assert split.column_names == ["text", "source", "lang"]
        assert len(split) > 0
        assert set(split["lang"]) == {"en", "zh"} and set(split["source"]) == set(SOURCES)
    assert 0.08 < len(corpus["validation"]) / (len(corpus["train"]) + len(corpus["validation"])) < 0.12


def test_split_rule_every_tenth_paragraph_of_each_file_is_validation():
    expected = {"train": [], "validation": []}
    for stem, lang in SOURCES.items():
        for i, text in enumerate(paragraphs(stem)):
            expected["validation" if i % 10 == 9 else "train"].append((stem, lang, text))
            assert split_of(i) == ("validation" if i % 10 == 9 else "train")
    assert rows("train") == expected["train"]
    assert rows("validation") == expected["validation"]


def test_splits_are_disjoint_and_together_are_the_whole_corpus():
    train, val = rows("train"), rows("validation")
    for stem in SOURCES:
        whole = paragraphs(stem)
        assert len([r for r in train if r[0] == stem]) + len([r for r in val if r[0] == stem]) == len(whole)
    shared = {r for r in train} & {r for r in val}
    # the same text in both splits only where a novel repeats a short line of dialogue
    assert all(len(text) < 40 and lang == "en" for _, lang, text in shared), shared


def test_load_corpus_is_cached_in_memory_and_deterministic():
    first = load_corpus()
    assert load_corpus() is first
    for split in first.values():
        assert split.cache_files == [], "the corpus must not write cache files (nor into the repo)"
    before = {s: rows(s) for s in first}
    load_corpus.cache_clear()
    corpus_text.cache_clear()
    try:
        assert {s: rows(s) for s in first} == before
    finally:
        load_corpus.cache_clear()
        corpus_text.cache_clear()


def test_chinese_rows_are_valid_multibyte_utf8():
    for split in ("train", "validation"):
        zh = [text for _, lang, text in rows(split) if lang == "zh"]
        assert zh, f"no Chinese rows in {split}"
        joined = "\n".join(zh)
        cjk = CJK.findall(joined)
        assert len(cjk) > 0.6 * len(joined), "Chinese rows are mostly CJK characters"
        assert all(len(c.encode("utf-8")) == 3 for c in cjk)
        assert len(joined.encode("utf-8")) > 2.5 * len(joined)
        assert joined.encode("utf-8").decode("utf-8") == joined
    en = corpus_text("train", "en")
    assert not CJK.search(en), "English rows contain CJK characters"


def test_readme_split_table_matches_the_loader():
    table = re.findall(r"^\| (train|validation) \| (en|zh) \| (\d+) \| (\d+) \| (\d+) \|$",
                       README.read_text(encoding="utf-8"), re.M)
    assert len(table) == 4
    for split, lang, n, chars, nbytes in table:
        text = corpus_text(split, lang)
        assert int(n) == sum(1 for _, g, _ in rows(split) if g == lang)
        assert (int(chars), int(nbytes)) == (len(text), len(text.encode("utf-8"))), (split, lang)


@pytest.mark.parametrize("split", ["train", "validation"])
@pytest.mark.parametrize("lang", [None, "en", "zh"])
def test_corpus_text_joins_the_rows_of_a_split_and_language_with_blank_lines(split, lang):
    expected = "\n\n".join(text for _, g, text in rows(split) if lang is None or g == lang)
    assert corpus_text(split, lang) == expected
    assert corpus_text(split=split, lang=lang) == expected


def test_corpus_text_defaults_to_train_both_languages_and_rejects_unknown_names():
    assert corpus_text() == corpus_text("train", None)
    assert corpus_text("train", "en") in corpus_text()
    with pytest.raises(ValueError):
        corpus_text("test")
    with pytest.raises(ValueError):
        corpus_text("train", "fr")


def test_rows_are_those_of_the_datasets_text_builder_by_paragraph(tmp_path, monkeypatch):
    """`load_dataset("text", sample_by="paragraph")` reads the same paragraphs (offline, cache in tmp)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    stems = ["lunyu", "botchan"]
    built = datasets.load_dataset("text", data_files={s: str(CORPUS_DIR / f"{s}.txt") for s in stems},
                                  sample_by="paragraph", cache_dir=str(tmp_path))
    for stem in stems:
        texts = list(built[stem]["text"])
        texts[-1] = texts[-1].removesuffix("\n")  # the builder keeps the file's final newline
        assert texts == paragraphs(stem)
