#!/usr/bin/env python
"""Build offline benchmark corpora and two labelled tasks from text shipped by Debian packages.

Nothing here uses WordNet or the Python documentation (those make the shipped quickstart corpus in `data/`).
Every file list is taken from `dpkg -L <package>` and sorted, every split is a seeded hash of a document id, so
the same package versions give byte-identical outputs (the gzip files carry no timestamp).

Outputs (default `~/.cache/neobert_hf_bench/corpora`):

- `long/`  train.jsonl.gz, validation.jsonl.gz, stats.json: one document per man page, perl pod page, git
  manual page, Linux kernel documentation file, whole info manual, and book of the King James Bible.
- `short/` the same files: one document per dictionary article (GCIDE/Webster 1913, FOLDOC, Jargon File, V.E.R.A.)
  and per fortune-cookie quote.
- `topic/` train/validation/test.jsonl.gz ({"text", "label"}), labels.json, stats.json: which Linux kernel
  documentation tree a paragraph comes from. Those trees are not used by `long`, so no task text is pretraining
  text.
- `pairs/` train/validation/test.jsonl.gz ({"anchor", "positive"}), stats.json: a GCIDE headword with its part
  of speech, and its first definition. The GCIDE articles used are held out of `short`.
- `pairs_retrieval/` the test pairs as a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) with extra
  held-out definitions as distractors, for `neobert-hf mteb --local_tasks NAME=<out>/pairs_retrieval`.

Usage:

    python benchmarks/corpora/build_corpora.py --install          # apt-get install what is missing, then build
    python benchmarks/corpora/build_corpora.py --out /tmp/corpora  # build; exits 1 with the apt-get line if a
                                                                   # package is missing
"""

from __future__ import annotations

import argparse
import base64
import collections
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SEED = "neobert-hf-bench-corpora-v1"
VALIDATION_PER_MILLE = 25  # 2.5% of documents go to validation
KERNEL_DOC = "/usr/share/doc/linux-doc-6.1/Documentation"

# Kernel documentation trees: the `long` corpus takes these ...
KERNEL_LONG_TREES = (
    # core kernel guides
    "process", "core-api", "mm", "RCU", "locking", "scheduler", "trace", "dev-tools", "doc-guide",
    "kernel-hacking", "security", "bpf", "block", "power", "timers", "virt", "crypto", "livepatch", "kbuild",
    # the ABI descriptions and short driver/architecture documents
    "ABI", "hwmon", "i2c", "usb", "sound", "input", "fb", "arm", "arm64", "x86", "powerpc", "s390", "scsi", "gpu",
    "w1", "leds", "spi", "watchdog", "misc-devices", "firmware-guide", "PCI", "cdrom", "accounting",
    "fault-injection", "cpu-freq", "infiniband", "isdn", "mhi", "netlabel", "nvdimm", "pcmcia", "peci", "target",
)
# ... and the `topic` task takes its classes from these (never in `long`).
TOPIC_TREES = ("admin-guide", "networking", "filesystems", "driver-api", "userspace-api")

INFO_PACKAGES = (
    "bash-doc", "autoconf-doc", "gnu-standards", "r-doc-info", "debian-policy", "developers-reference",
    "coreutils", "findutils", "sed", "grep", "diffutils", "gzip",
)
MAN_PACKAGES = ("manpages", "manpages-dev")
LONG_PACKAGES = (*MAN_PACKAGES, "perl-doc", "git-doc", "linux-doc-6.1", "bible-kjv", "bible-kjv-text",
                 *INFO_PACKAGES)
DICT_PACKAGES = ("dict-gcide", "dict-foldoc", "dict-jargon", "dict-vera")
FORTUNE_PACKAGES = ("fortunes", "fortunes-min")
SHORT_PACKAGES = (*DICT_PACKAGES, *FORTUNE_PACKAGES)
TOOLS = {"man-db": "man", "groff-base": "groff", "bsdextrautils": "col", "perl": "pod2text"}
PACKAGES = tuple(dict.fromkeys((*LONG_PACKAGES, *SHORT_PACKAGES, *TOOLS)))

TOPIC_SPLIT_SIZES = {"train": 15000, "validation": 2000, "test": 2000}
PAIRS_SPLIT_SIZES = {"train": 15000, "validation": 2000, "test": 2000}
PAIRS_DISTRACTORS = 3000  # extra GCIDE definitions in the test retrieval corpus


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------


def stable_hash(key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{SEED}:{key}".encode()).digest()[:8], "big")


def is_validation(doc_id: str) -> bool:
    return stable_hash(doc_id) % 1000 < VALIDATION_PER_MILLE


def text_key(text: str) -> str:
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()


def read_text(path: str) -> str:
    data = gzip.open(path).read() if path.endswith((".gz", ".dz")) else Path(path).read_bytes()
    return data.decode("utf-8", errors="replace")


def tidy(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, no leading/trailing blank lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\t", "    ").split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def write_jsonl_gz(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        with io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    return n


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def package_files(package: str) -> list[str]:
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.splitlines() if os.path.isfile(p) and not os.path.islink(p))


def package_versions() -> dict[str, str | None]:
    versions = {}
    for package in PACKAGES:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
                             capture_output=True, text=True)
        status, _, version = out.stdout.partition("\t")
        versions[package] = version if out.returncode == 0 and status.endswith(" installed") else None
    return versions


def ensure_packages(install: bool) -> dict[str, str]:
    versions = package_versions()
    missing = [p for p, v in versions.items() if v is None]
    if missing:
        command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        if not install:
            print(f"missing Debian packages: {' '.join(missing)}\ninstall them with:\n  {' '.join(command)}\n"
                  f"(or rerun with --install)", file=sys.stderr)
            sys.exit(1)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=True, env=env)
        versions = package_versions()
        still = [p for p, v in versions.items() if v is None]
        if still:
            sys.exit(f"apt-get did not install: {' '.join(still)}")
    return versions


# --------------------------------------------------------------------------------------------------------------
# Long documents
# --------------------------------------------------------------------------------------------------------------


def _is_so_stub(path: str) -> bool:
    for line in read_text(path).splitlines():
        if line.startswith(('.\\"', "'\\\"")) or not line.strip():
            continue
        return line.startswith(".so ")
    return True


def render_man(path: str) -> str:
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    man = subprocess.run(["man", "-l", "-E", "UTF-8", path], capture_output=True, env=env, check=True)
    out = subprocess.run(["col", "-bx"], input=man.stdout, capture_output=True, env=env, check=True).stdout
    lines = out.decode("utf-8", errors="replace").splitlines()
    # Drop the running header and footer lines (page title and version/date).
    if lines and lines[0].strip() and "(" in lines[0]:
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and "(" in lines[-1] and len(lines[-1].split()) <= 8:
        lines = lines[:-1]
    return tidy("\n".join(lines))


def man_documents(workers: int):
    jobs = []
    for package in MAN_PACKAGES:
        for path in package_files(package):
            m = re.fullmatch(r"/usr/share/man/man([1-8])/(.+)\.gz", path)
            if m and not _is_so_stub(path):
                jobs.append((package, m.group(1), path))
    with ThreadPoolExecutor(workers) as pool:
        texts = pool.map(lambda job: render_man(job[2]), jobs)
        for (package, section, path), text in zip(jobs, texts):
            name = os.path.basename(path)[:-3]
            yield {"id": f"{package}:{path}", "source": f"{package}/man{section}/{name}", "text": text}


def pod_documents():
    for path in package_files("perl-doc"):
        # perl*delta pages (release histories) are left out to keep the corpus size in bounds.
        if re.fullmatch(r"/usr/share/perl/[^/]+/pod/[^/]+\.pod", path) and not path.endswith("delta.pod"):
            out = subprocess.run(["pod2text", "-w", "80", path], capture_output=True, check=True).stdout
            name = os.path.basename(path)
            yield {"id": f"perl-doc:{path}", "source": f"perl-doc/pod/{name}",
                   "text": tidy(out.decode("utf-8", errors="replace"))}


_LINKGIT = re.compile(r"linkgit:([\w.-]+)\[(\d)\]")
_ASCIIDOC_ATTR = re.compile(r"\{(?:litdd|tilde|caret|startsb|endsb|plus|apostrophe|empty)\}")
_ATTR_VALUES = {"{litdd}": "--", "{tilde}": "~", "{caret}": "^", "{startsb}": "[", "{endsb}": "]", "{plus}": "+",
                "{apostrophe}": "'", "{empty}": ""}


def clean_asciidoc(text: str) -> str:
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if re.fullmatch(r"(include|ifdef|ifndef|endif|ifeval)::.*", s) or re.fullmatch(r"\[\[?[^\]]*\]\]?", s):
            continue
        if re.fullmatch(r"([-=~^+.'*_/])\1{3,}", s) or s.startswith(("//", ":")) and not s.startswith("::"):
            continue
        line = _LINKGIT.sub(r"\1(\2)", line)
        line = _ASCIIDOC_ATTR.sub(lambda m: _ATTR_VALUES[m.group(0)], line)
        lines.append(line)
    return tidy("\n".join(lines))


def git_documents():
    for path in package_files("git-doc"):
        if path.endswith(".txt") and path.startswith("/usr/share/doc/git-doc/"):
            rel = path[len("/usr/share/doc/git-doc/"):]
            yield {"id": f"git-doc:{path}", "source": f"git-doc/{rel[:-4]}", "text": clean_asciidoc(read_text(path))}


_RST_ADORNMENT = re.compile(r"^([=\-~^\"'*#+`:.])\1{2,}\s*$")
_RST_DROP_DIRECTIVES = ("toctree", "kernel-doc", "kernel-abi", "kernel-feat", "kernel-include", "only", "raw",
                        "include", "literalinclude", "image", "figure", "contents", "tabularcolumns", "flat-table",
                        "cssclass", "SPDX", "code-block", "highlight", "index")


def clean_rst(text: str) -> str:
    """Light reStructuredText clean-up: drop comments, labels, heading adornments and non-prose directives."""
    out, skip_indent = [], None
    for line in text.splitlines():
        s = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if not s or indent > skip_indent:
                continue
            skip_indent = None
        if s.startswith(".. "):
            m = re.match(r"\.\.\s+([\w:-]+)::", s)
            if m is None or m.group(1) in _RST_DROP_DIRECTIVES or s.startswith(".. _") or "SPDX" in s:
                skip_indent = indent  # comments, labels and dropped directives, with their indented bodies
                continue
            continue  # a prose directive (note, warning, ...): drop the marker line, keep its body
        if _RST_ADORNMENT.match(s):
            continue
        line = re.sub(r":(?:c:)?(?:func|ref|doc|c:type|type|macro|manpage|envvar|file|option):`~?([^`<]*?)\s*(?:<[^`>]*>)?`",
                      r"\1", line)
        line = line.replace("``", "")
        out.append(line)
    return tidy("\n".join(out))


def kernel_files(trees: tuple[str, ...], include_top_level: bool) -> list[tuple[str, str]]:
    files = []
    for path in package_files("linux-doc-6.1"):
        if not path.startswith(KERNEL_DOC + "/") or not path.endswith(".gz"):
            continue
        rel = path[len(KERNEL_DOC) + 1:]
        top = rel.split("/")[0]
        if not path.endswith((".rst.gz", ".txt.gz")) and not (top == "ABI" and rel.count("/") == 2):
            continue  # ABI descriptions have no suffix; elsewhere only .rst/.txt are documents
        if top in trees or (include_top_level and "/" not in rel):
            files.append((path, rel[:-3]))
    return files


def kernel_documents():
    for path, rel in kernel_files(KERNEL_LONG_TREES, include_top_level=True):
        yield {"id": f"linux-doc-6.1:{path}", "source": f"linux-doc-6.1/{rel}", "text": clean_rst(read_text(path))}


_INFO_NODE = re.compile(r"\x1f\n(?:File: [^\n]*Node: ([^,\n]*)[^\n]*\n|Tag Table:.*|Indirect:.*|End Tag Table.*|"
                        r"Local Variables:.*)", re.S)


def clean_info(text: str) -> str:
    """Whole info manual -> plain text: node headers, menus, index nodes and the tag table removed."""
    parts = text.split("\x1f")
    kept = []
    for part in parts:
        body = part.lstrip("\n")
        if body.startswith(("Tag Table:", "Indirect:", "End Tag Table", "Local Variables")):
            continue
        if body.startswith("File: "):
            header, _, body = body.partition("\n")
            node = re.search(r"Node: ([^,]*)", header)
            if node and "index" in node.group(1).lower():
                continue
        elif kept or "START-INFO-DIR-ENTRY" in body or body.startswith("This is "):
            continue  # the preamble (file name and dir entry)
        lines, in_menu = [], False
        for line in body.splitlines():
            if line.startswith("* Menu:"):
                in_menu = True
                continue
            if in_menu:
                if line.startswith("* ") or line.startswith(" ") or not line.strip():
                    continue
                in_menu = False
            lines.append(line)
        kept.append("\n".join(lines))
    return tidy("\n\n".join(kept))


def info_documents():
    for package in INFO_PACKAGES:
        manuals = collections.defaultdict(list)
        for path in package_files(package):
            m = re.fullmatch(r"/usr/share/info/(.+?\.info)(?:-(\d+))?\.gz", path)
            if m:
                manuals[m.group(1)].append((int(m.group(2) or 0), path))
        for manual in sorted(manuals):
            # The main file holds the indirect table; its numbered parts hold the nodes, in order.
            text = "".join(read_text(p) for _, p in sorted(manuals[manual]))
            yield {"id": f"{package}:/usr/share/info/{manual}", "source": f"{package}/info/{manual}",
                   "text": clean_info(text)}


def bible_documents():
    out = subprocess.run(["bible", "Ge1:1-Re22:21"], capture_output=True, check=True,
                         env=dict(os.environ, COLUMNS="100000")).stdout.decode("utf-8", errors="replace")
    books: dict[str, list[str]] = {}
    book = None
    for line in out.splitlines():
        m = re.fullmatch(r"((?:\d )?[A-Z][A-Za-z ]+?) (\d+)", line.strip())
        if m and not line.startswith(" "):
            book = m.group(1)
            books.setdefault(book, []).append(f"\n{book} {m.group(2)}\n")
            continue
        m = re.match(r"\s*\d+ (.*)", line)
        if book and m:
            books[book].append(m.group(1))
        elif book and line.strip():
            books[book][-1] += " " + line.strip()
    for number, (book, lines) in enumerate(books.items(), start=1):
        yield {"id": f"bible-kjv-text:{number:02d}", "source": f"bible-kjv-text/{number:02d} {book}",
               "text": tidy(f"The Book of {book} (King James Version)\n" + "\n".join(lines))}


# --------------------------------------------------------------------------------------------------------------
# Short documents
# --------------------------------------------------------------------------------------------------------------

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64_number(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def dict_regions(package: str) -> list[tuple[int, str, str]]:
    """The articles of a dictd database: (offset, first headword, raw text), in file order, one per region."""
    index = next(p for p in package_files(package) if p.endswith(".index"))
    data = gzip.open(index[: -len(".index")] + ".dict.dz").read()
    regions = {}
    with open(index, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or fields[0].startswith("00-database") or fields[0].startswith("00database"):
                continue
            offset, length = _b64_number(fields[1]), _b64_number(fields[2])
            if offset not in regions:
                regions[offset] = (fields[0], data[offset: offset + length].decode("utf-8", errors="replace"))
    return [(offset, *regions[offset]) for offset in sorted(regions)]


_GCIDE_TAG = re.compile(r"\s*\[(?:1913 Webster|WordNet 1\.5|PJC|Webster 1913 Suppl\.|Century Dict\.|"
                        r"WordNet 1\.5 \+PJC|RE?)\]")
_GCIDE_TAG_LINE = re.compile(_GCIDE_TAG.pattern + r"[^\n]*")
_GCIDE_PRON = re.compile(r" \\[^\\\n]*\\")


def clean_dict_text(package: str, raw: str) -> str:
    text = raw
    if package == "dict-gcide":
        text = _GCIDE_TAG_LINE.sub("", text)  # source tags end a line; a few are followed by a stray headword
        text = _GCIDE_PRON.sub("", text)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    paragraphs = [p.replace("{", "").replace("}", "") for p in paragraphs if p]
    if package in ("dict-vera", "dict-foldoc", "dict-jargon") and len(paragraphs) > 1:
        paragraphs[0] = paragraphs[0] + ":" if not paragraphs[0].endswith(":") else paragraphs[0]
        return paragraphs[0] + " " + "\n".join(paragraphs[1:])
    return "\n".join(paragraphs)


def fortune_documents():
    for package in FORTUNE_PACKAGES:
        for path in package_files(package):
            if not path.startswith("/usr/share/games/fortunes/") or path.endswith(".dat") or "/off/" in path:
                continue
            name = os.path.basename(path)
            if name in ("ascii-art", "art"):
                continue  # ASCII drawings, not text
            for k, quote in enumerate(read_text(path).split("\n%\n")):
                quote = tidy(quote.strip("%\n"))
                if len(quote.split()) >= 3:
                    yield {"id": f"{package}:{path}#{k}", "source": f"{package}/{name}", "text": quote}


# --------------------------------------------------------------------------------------------------------------
# GCIDE entries (for the pairs task)
# --------------------------------------------------------------------------------------------------------------

POS_NAMES = {
    "n.": "noun", "n. pl.": "plural noun", "a.": "adjective", "adj.": "adjective", "v. t.": "transitive verb",
    "v. i.": "intransitive verb", "v.": "verb", "adv.": "adverb", "prep.": "preposition", "conj.": "conjunction",
    "interj.": "interjection", "pron.": "pronoun", "p. p.": "past participle", "p. a.": "participial adjective",
    "p. pr.": "present participle", "imp.": "past tense", "pl.": "plural",
}
_GCIDE_HEAD = re.compile(r"^([^\\\n]+?) \\[^\\\n]*\\, ((?:[a-z]+\. ?){1,3})")


def gcide_first_sense(raw: str) -> tuple[str, str, str] | None:
    """(headword, part of speech, first definition) of the first entry of a GCIDE article, or None."""
    m = _GCIDE_HEAD.match(raw)
    if not m:
        return None
    headword, pos = m.group(1).strip(), m.group(2).strip().rstrip(",;")
    pos_name = POS_NAMES.get(pos)
    if pos_name is None:
        return None
    entry = re.split(r"\n(?=\S)", raw.strip(), maxsplit=1)[0]  # the first entry: up to the next column-0 line
    body = entry.split("\n", 1)[1] if "\n" in entry else ""
    # Skip the rest of the head (etymology in brackets can wrap onto the next lines).
    head_rest = entry.split("\n", 1)[0]
    if head_rest.count("[") > head_rest.count("]") and "]" in body:
        body = body.split("]", 1)[1]
    body = _GCIDE_TAG_LINE.sub("", body)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body)]
    paragraphs = [_GCIDE_TAG_LINE.sub("", p).strip() for p in paragraphs]
    paragraphs = [p for p in paragraphs if p and not p.startswith(("Syn.", "Note:", "--"))]
    if not paragraphs:
        return None
    definition = re.sub(r"^1\.\s*", "", paragraphs[0])
    definition = re.sub(r"\s*--\s*?[A-Z][\w. ]*\.?$", "", definition)  # trailing citation like "--Bailey."
    definition = definition.replace("{", "").replace("}", "").strip()
    if len(definition.split()) < 4 or headword.lower() in definition.lower().split()[:1]:
        return None
    return headword, pos_name, definition


# --------------------------------------------------------------------------------------------------------------
# Corpora
# --------------------------------------------------------------------------------------------------------------


def corpus_stats(docs: list[dict]) -> dict:
    lengths = sorted((len(d["text"]) for d in docs), reverse=True)
    total = sum(lengths)
    top = lengths[: max(1, len(lengths) // 100)]
    words = sorted((len(d["text"].split()) for d in docs), reverse=True)
    by_source = collections.Counter(d["source"].split("/")[0] for d in docs)
    chars_by_source = collections.Counter()
    for d in docs:
        chars_by_source[d["source"].split("/")[0]] += len(d["text"])
    return {
        "documents": len(docs), "characters": total, "words": sum(words),
        "share_of_characters_in_longest_1pct": round(sum(top) / max(total, 1), 4),
        "longest_document_characters": lengths[0] if lengths else 0,
        "longest_document_words": words[0] if words else 0,
        "median_document_words": words[len(words) // 2] if words else 0,
        "documents_over_10k_words": sum(w > 10_000 for w in words),
        "documents_over_2k_words": sum(w > 2_000 for w in words),
        "documents_by_package": dict(sorted(by_source.items())),
        "characters_by_package": dict(sorted(chars_by_source.items())),
    }


def write_corpus(out: Path, name: str, docs: list[dict], excluded_ids: set[str], versions: dict, packages) -> dict:
    """Dedup, split by a hash of the document id, write train/validation.jsonl.gz and stats.json."""
    docs = sorted((d for d in docs if d["id"] not in excluded_ids and len(d["text"].split()) >= 3),
                  key=lambda d: d["id"])
    seen, unique = set(), []
    for d in docs:
        key = text_key(d["text"])
        if key not in seen:
            seen.add(key)
            unique.append(d)
    splits = {"train": [], "validation": []}
    for d in unique:
        splits["validation" if is_validation(d["id"]) else "train"].append(d)
    for split in splits:
        splits[split].sort(key=lambda d: stable_hash("order:" + d["id"]))  # shuffled, deterministically
        write_jsonl_gz(out / name / f"{split}.jsonl.gz",
                       ({"text": d["text"], "source": d["source"]} for d in splits[split]))
    stats = {
        "name": name, "seed": SEED, "validation_per_mille": VALIDATION_PER_MILLE,
        "duplicates_removed": len(docs) - len(unique), "held_out_for_tasks": len(excluded_ids),
        **{split: corpus_stats(rows) for split, rows in splits.items()},
        "all": corpus_stats(unique),
        "packages": {p: versions[p] for p in packages},
    }
    (out / name / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    a = stats["all"]
    print(f"[{name}] documents {a['documents']} (train {len(splits['train'])}, validation "
          f"{len(splits['validation'])}), characters {a['characters']:,}, words {a['words']:,}, "
          f"longest 1% of docs hold {a['share_of_characters_in_longest_1pct']:.1%} of characters, longest doc "
          f"{a['longest_document_characters']:,} chars / {a['longest_document_words']:,} words, "
          f"docs >10k words {a['documents_over_10k_words']}, >2k words {a['documents_over_2k_words']}", flush=True)
    return stats


# --------------------------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------------------------


def paragraphs_of(text: str, min_words: int = 20, max_words: int = 100) -> list[str]:
    """Prose paragraphs of `min_words`..`max_words` words (code, tables and lists left out)."""
    result = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        if any(re.match(r"\s*([-*+|#]|\d+[.)]|\w+\s*::?$)", line) for line in lines[:1]):
            continue
        if sum(line.startswith((" " * 4, "\t")) for line in lines) > len(lines) // 2:
            continue  # literal/code blocks
        joined = " ".join(" ".join(lines).split())
        letters = sum(c.isalpha() for c in joined)
        if letters < 0.7 * len(joined.replace(" ", "")) or not re.search(r"[.!?:)]$", joined):
            continue
        # A paragraph over max_words is cut at sentence ends into pieces of at most max_words words.
        pieces, current = [], []
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", joined):
            n = len(sentence.split())
            if current and len(" ".join(current).split()) + n > max_words:
                pieces.append(" ".join(current))
                current = []
            current.append(sentence)
        pieces.append(" ".join(current))
        result.extend(p for p in pieces if min_words <= len(p.split()) <= max_words)
    return result


def build_topic(out: Path, versions: dict, long_paragraph_keys: set[str]) -> dict:
    """Kernel paragraphs labelled by documentation tree; a paragraph that also occurs in `long` is dropped."""
    per_class_docs = collections.defaultdict(list)
    for path, rel in kernel_files(TOPIC_TREES, include_top_level=False):
        label = TOPIC_TREES.index(rel.split("/")[0])
        per_class_docs[label].append((path, rel))
    split_rows = {split: collections.defaultdict(list) for split in TOPIC_SPLIT_SIZES}
    seen = set()
    for label, files in sorted(per_class_docs.items()):
        for path, rel in files:
            h = stable_hash("topic:" + rel) % 1000
            split = "test" if h < 105 else "validation" if h < 210 else "train"
            for k, para in enumerate(paragraphs_of(clean_rst(read_text(path)))):
                key = text_key(para)
                if key in seen or key in long_paragraph_keys:
                    continue
                seen.add(key)
                split_rows[split][label].append({"text": para, "label": label, "_key": f"{rel}#{k}"})
    stats = {"labels": list(TOPIC_TREES), "source": "linux-doc-6.1 Documentation/<tree>/ (trees not in `long`)",
             "package": {"linux-doc-6.1": versions["linux-doc-6.1"]}, "splits": {}}
    for split, target in TOPIC_SPLIT_SIZES.items():
        rows_by_label = split_rows[split]
        available = {label: len(rows_by_label[label]) for label in range(len(TOPIC_TREES))}
        per_class = min(target // len(TOPIC_TREES), *available.values())  # balanced classes
        rows = []
        for label in range(len(TOPIC_TREES)):
            candidates = sorted(rows_by_label[label], key=lambda r: stable_hash("pick:" + r["_key"]))
            rows.extend(candidates[:per_class])
        rows.sort(key=lambda r: stable_hash("order:" + r["_key"]))
        write_jsonl_gz(out / "topic" / f"{split}.jsonl.gz", ({"text": r["text"], "label": r["label"]} for r in rows))
        words = [len(r["text"].split()) for r in rows]
        stats["splits"][split] = {"examples": len(rows), "per_class": per_class, "available_per_class": available,
                                  "mean_words": round(sum(words) / max(len(words), 1), 1)}
        print(f"[topic] {split}: {len(rows)} examples, {per_class} per class (available {available}), "
              f"mean {stats['splits'][split]['mean_words']} words", flush=True)
    (out / "topic" / "labels.json").write_text(json.dumps(list(TOPIC_TREES), indent=2) + "\n")
    (out / "topic" / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def select_pairs(regions: list[tuple[int, str, str]]) -> tuple[dict[str, list[dict]], set[str]]:
    """Pick GCIDE articles for the pairs task: one pair per headword, the split by a hash of the headword."""
    candidates = {}
    for offset, _, raw in regions:
        sense = gcide_first_sense(raw.lstrip("\n"))
        if sense is None:
            continue
        headword, pos, definition = sense
        key = headword.lower()
        if key not in candidates:
            candidates[key] = {"id": f"dict-gcide:{offset}", "anchor": f"{headword.lower()} ({pos})",
                               "positive": definition}
    ordered = sorted(candidates.values(), key=lambda c: stable_hash("pairs:" + c["anchor"]))
    sizes = [("test", PAIRS_SPLIT_SIZES["test"]), ("validation", PAIRS_SPLIT_SIZES["validation"]),
             ("distractors", PAIRS_DISTRACTORS), ("train", PAIRS_SPLIT_SIZES["train"])]
    chosen, start, seen = {}, 0, set()
    for split, size in sizes:
        rows = []
        while len(rows) < size and start < len(ordered):
            c = ordered[start]
            start += 1
            key = text_key(c["positive"])
            if key not in seen:
                seen.add(key)
                rows.append(c)
        chosen[split] = rows
    return chosen, {c["id"] for rows in chosen.values() for c in rows}


def write_pairs(out: Path, chosen: dict[str, list[dict]], versions: dict) -> dict:
    folder, beir = out / "pairs", out / "pairs_retrieval"
    for split in ("train", "validation", "test"):
        write_jsonl_gz(folder / f"{split}.jsonl.gz",
                       ({"anchor": c["anchor"], "positive": c["positive"]} for c in chosen[split]))
    test = chosen["test"]
    corpus = [{"_id": f"d{k}", "text": c["positive"], "_order": stable_hash("corpus:" + c["id"])}
              for k, c in enumerate(test + chosen["distractors"])]
    corpus.sort(key=lambda r: r["_order"])
    write_jsonl(beir / "corpus.jsonl", ({"_id": r["_id"], "text": r["text"]} for r in corpus))
    write_jsonl(beir / "queries.jsonl", ({"_id": f"q{k}", "text": c["anchor"]} for k, c in enumerate(test)))
    (beir / "qrels").mkdir(parents=True, exist_ok=True)
    with open(beir / "qrels" / "test.tsv", "w", encoding="utf-8", newline="\n") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for k in range(len(test)):
            f.write(f"q{k}\td{k}\t1\n")
    stats = {"source": "dict-gcide: (headword (part of speech), first definition of its first entry)",
             "package": {"dict-gcide": versions["dict-gcide"]},
             "train_pairs": len(chosen["train"]), "validation_pairs": len(chosen["validation"]),
             "test_queries": len(test), "test_corpus": len(corpus),
             "mean_positive_words": round(sum(len(c["positive"].split()) for c in chosen["train"])
                                          / max(len(chosen["train"]), 1), 1)}
    (folder / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"[pairs] train {stats['train_pairs']}, validation {stats['validation_pairs']}, test {len(test)} queries "
          f"over a corpus of {len(corpus)} definitions (BEIR folder {beir})", flush=True)
    return stats


# --------------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.expanduser("~/.cache/neobert_hf_bench/corpora"))
    parser.add_argument("--install", action="store_true", help="apt-get install the Debian packages that are missing")
    parser.add_argument("--workers", type=int, default=2, help="parallel man/groff processes")
    args = parser.parse_args(argv)
    start = time.time()
    versions = ensure_packages(args.install)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    long_docs = [*man_documents(args.workers), *pod_documents(), *git_documents(), *kernel_documents(),
                 *info_documents(), *bible_documents()]
    print(f"long sources read in {time.time() - start:.0f}s", flush=True)
    summary = {"long": write_corpus(out, "long", long_docs, set(), versions, LONG_PACKAGES)}

    short_docs, gcide_regions = [], []
    for package in DICT_PACKAGES:
        regions = dict_regions(package)
        if package == "dict-gcide":
            gcide_regions = regions
        for offset, headword, raw in regions:
            short_docs.append({"id": f"{package}:{offset}", "source": f"{package}/{headword}",
                               "text": clean_dict_text(package, raw)})
    short_docs.extend(fortune_documents())
    chosen, pair_ids = select_pairs(gcide_regions)
    summary["short"] = write_corpus(out, "short", short_docs, pair_ids, versions, SHORT_PACKAGES)
    long_paragraph_keys = {text_key(p) for d in long_docs for p in paragraphs_of(d["text"])}
    summary["topic"] = build_topic(out, versions, long_paragraph_keys)
    summary["pairs"] = write_pairs(out, chosen, versions)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"done in {time.time() - start:.0f}s: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
