#!/usr/bin/env python
"""Rebuild the shipped English corpus (`data/corpus/`) and WordPiece tokenizer (`data/tokenizer/`).

The corpus is made from two Debian packages whose licences allow redistribution:

- `wordnet-base` (WordNet 3.0, WordNet 3.0 licence): one document per synset, made of its lemmas, part of
  speech, gloss and usage examples.
- `python3.11-doc` (the Python 3.11 documentation, PSF License Version 2): the reStructuredText sources under
  `html/_sources/` are turned into plain prose (code blocks, doctests, tables, directives and markup removed),
  one document per section.

Documents are cleaned, exact-deduplicated after whitespace/case normalisation, shuffled with a fixed seed, and
split by a hash of their text into `train.jsonl.gz` (~99%) and `validation.jsonl.gz` (~1%), with fields
`text` and `source`. The gzip files are written byte-reproducibly (no timestamp in the header).

A lowercase BERT-style WordPiece tokenizer ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4) is then trained on the
train split only and saved with `save_pretrained` so that `AutoTokenizer.from_pretrained("data/tokenizer")` works
offline.

Usage (from the repository root, on a Debian/Ubuntu machine; the packages are only downloaded and unpacked into a
temporary folder, never installed):

```bash
python data/corpus/build_corpus.py                    # apt-get download + dpkg -x into a temp dir
python data/corpus/build_corpus.py --source-dir /tmp/x  # reuse an already unpacked tree (dpkg -x target)
```
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import re
import subprocess
import tempfile
from pathlib import Path

DEBIAN_PACKAGES = ("wordnet-base", "python3.11-doc")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_SIZE = 8192
VALIDATION_PERCENT = 1
SHUFFLE_SEED = 0
REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------------------------
# Fetching the packages
# --------------------------------------------------------------------------------------------------------------


def fetch_packages(workdir: Path) -> tuple[Path, dict[str, str]]:
    """Download the Debian packages with `apt-get download` and unpack them with `dpkg -x` (no install)."""
    debs = workdir / "debs"
    root = workdir / "root"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=debs, check=True)
    versions = {}
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        name, version = deb.name.split("_")[:2]
        versions[name] = version.replace("%3a", ":")
    return root, versions


# --------------------------------------------------------------------------------------------------------------
# WordNet
# --------------------------------------------------------------------------------------------------------------

WORDNET_POS = {"noun": "noun", "verb": "verb", "adj": "adjective", "adv": "adverb"}
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")


def wordnet_documents(wordnet_dir: Path) -> list[str]:
    """One document per synset: `lemma, lemma (pos): definition. "example"; "example"`."""
    docs = []
    for file_pos, pos_name in WORDNET_POS.items():
        with open(wordnet_dir / f"data.{file_pos}", encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                n_words = int(fields[3], 16)
                lemmas = []
                for k in range(n_words):
                    word = _ADJ_MARKER.sub("", fields[4 + 2 * k]).replace("_", " ")
                    if word not in lemmas:
                        lemmas.append(word)
                parts = [p.strip() for p in gloss.strip().split(";")]
                definition = "; ".join(p for p in parts if p and not p.startswith('"'))
                examples = [p for p in parts if p.startswith('"')]
                if not definition:
                    continue
                text = f"{', '.join(lemmas)} ({pos_name}): {definition.rstrip('.')}."
                if examples:
                    text += " " + "; ".join(examples)
                docs.append(text)
    return docs


# --------------------------------------------------------------------------------------------------------------
# Python documentation (reStructuredText sources -> prose)
# --------------------------------------------------------------------------------------------------------------

# Directives whose whole block is code, markup or metadata: dropped with their indented body.
SKIPPED_DIRECTIVES = {
    "code-block", "code", "sourcecode", "literalinclude", "testcode", "testoutput", "testsetup", "testcleanup",
    "doctest", "productionlist", "highlight", "toctree", "index", "image", "figure", "raw", "include",
    "csv-table", "list-table", "table", "tabularcolumns", "module", "currentmodule", "moduleauthor",
    "sectionauthor", "program", "audit-event", "audit-event-table", "contents", "parsed-literal", "miscnews",
    "limited-api-list", "opcode", "pdbcommand", "cmdoption", "option", "envvar", "only", "literal-block",
}
# Files that are not prose (licence texts, tables of contents, the changelog).
SKIPPED_FILES = {"license.rst.txt", "copyright.rst.txt", "contents.rst.txt", "changelog.rst.txt", "bugs.rst.txt"}

_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
_COMMENT = re.compile(r"^(\s*)\.\.(\s|$)")
_ADORNMENT = re.compile(r"^([=\-~^\"'*#+`:.])\1{2,}\s*$")
_SIMPLE_TABLE_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")
_OPTION_LINE = re.compile(r"^\s*:[\w -]+:")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|#\.|\d+\.|\(?[a-zA-Z0-9]\))\s+")
_ROLE = re.compile(r":(?:[\w-]+:)+`([^`]+)`")
_NAMED_ROLES = {"pep": "PEP {}", "rfc": "RFC {}", "issue": "issue {}", "gh": "gh-{}"}
_ROLE_NAME = re.compile(r":((?:[\w-]+:)*[\w-]+):`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_LINK = re.compile(r"`([^`<]*?)\s*(?:<[^`>]*>)?`__?")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?![\s*])([^*]*?[^\s*\\])\*(?![\w*])")
_FOOTNOTE = re.compile(r"\s*\[(?:#\w*|\d+|\*)\]_")
_SUBSTITUTION = re.compile(r"\|(\w+)\|")
_ESCAPE = re.compile(r"\\(?=[*_`|\\:])")


def _role_text(match: re.Match) -> str:
    role, content = match.group(1).split(":")[-1], match.group(2)
    if "<" in content and content.rstrip().endswith(">"):
        content = content[: content.rindex("<")].strip()
    content = content.lstrip("~!")
    if role in {"func", "meth", "class", "attr", "exc", "data", "mod", "obj", "const", "type", "member",
                "macro", "var", "c", "expr"} and match.group(0).count("~"):
        content = content.rsplit(".", 1)[-1]
    if role in _NAMED_ROLES:
        content = _NAMED_ROLES[role].format(content)
    return content


def clean_inline(text: str) -> str:
    """Remove reStructuredText inline markup, keeping the words a reader would see."""
    text = _ROLE_NAME.sub(_role_text, text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text)
    text = _SUBSTITUTION.sub(lambda m: {"version": "3.11", "release": "3.11"}.get(m.group(1), m.group(1)), text)
    # "\ " is rST's zero-width separator; a backslash before markup characters escapes them.
    text = _ESCAPE.sub("", text.replace("\\ ", "")).replace("`", "")
    return re.sub(r"\s+", " ", text).strip()


def rst_sections(source: str) -> list[tuple[str, list[str]]]:
    """Split a reStructuredText source into `(heading, paragraphs)` sections of prose.

    A line-based pass: drops code/metadata directives and their bodies, literal blocks (after `::`), doctest
    paragraphs, grid and simple tables, comments and targets; keeps the body of prose directives (function and
    class descriptions, notes, "versionadded", ...).
    """
    lines = source.replace("\t", "    ").splitlines()
    sections: list[tuple[str, list[str]]] = [("", [])]
    paragraph: list[str] = []
    paragraph_indent = 0
    skip_indent: int | None = None  # inside a dropped block: skip lines indented deeper than this
    literal_indent: int | None = None  # the last paragraph ended with "::" at this indentation
    in_table = False
    previous = ""

    def flush() -> None:
        nonlocal literal_indent
        if paragraph:
            raw = " ".join(p.strip() for p in paragraph)
            if raw.endswith("::"):
                literal_indent = paragraph_indent
                raw = raw[:-2].rstrip() + ("" if raw[:-2].endswith(" ") or raw == "::" else ":")
            if not raw.startswith(">>>") and raw:
                sections[-1][1].append(raw)
            paragraph.clear()

    for i, line in enumerate(lines):
        stripped = line.strip()
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        indent = len(line) - len(line.lstrip(" "))
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                previous = line
                continue
            skip_indent = None
        if in_table:
            if not stripped and _SIMPLE_TABLE_BORDER.match(previous):
                in_table = False
            previous = line
            continue
        if not stripped:
            flush()
            previous = line
            continue
        if literal_indent is not None and not paragraph:
            # A literal (code) block is everything indented deeper than the paragraph that announced it.
            if indent > literal_indent:
                skip_indent, literal_indent = literal_indent, None
                previous = line
                continue
            literal_indent = None
        if _ADORNMENT.match(line) and not _SIMPLE_TABLE_BORDER.match(line):
            flush()  # overline or transition
            previous = line
            continue
        if _ADORNMENT.match(nxt) and len(nxt.rstrip()) >= len(stripped) and not paragraph:
            sections.append((clean_inline(stripped), []))
            previous = line
            continue
        if _SIMPLE_TABLE_BORDER.match(line):
            flush()
            in_table = True
            previous = line
            continue
        if stripped.startswith(("+-", "+=", "| ")) or stripped == "|":
            flush()
            previous = line
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            flush()
            full_name = directive.group(2)
            name = full_name.split(":")[-1]
            if full_name in SKIPPED_DIRECTIVES or name in SKIPPED_DIRECTIVES:
                skip_indent = indent
            elif name in {"versionadded", "versionchanged", "deprecated", "deprecated-removed"}:
                version, _, rest = directive.group(3).partition(" ")
                label = {"versionadded": "New in version", "versionchanged": "Changed in version"}.get(
                    name, "Deprecated since version"
                )
                # The directive's body (the next, deeper-indented lines) continues this paragraph.
                paragraph.append(f"{label} {version}." + (f" {rest}" if rest else ""))
                paragraph_indent = indent
            elif name == "seealso" and directive.group(3):
                sections[-1][1].append("See also: " + directive.group(3))
            previous = line
            continue
        if _COMMENT.match(line):
            flush()
            skip_indent = indent
            previous = line
            continue
        if not paragraph and _OPTION_LINE.match(line) and indent > 0:
            previous = line  # directive options such as ":synopsis:" or ":noindex:"
            continue
        if not paragraph:
            paragraph_indent = indent
            line = _LIST_MARKER.sub("", line, count=1)
        paragraph.append(line)
        previous = line
    flush()
    return sections


def _is_prose(paragraph: str) -> bool:
    if len(paragraph) < 25 or len(paragraph.split()) < 4:
        return False
    letters = sum(c.isalpha() or c.isspace() for c in paragraph)
    return letters / len(paragraph) >= 0.8


def python_doc_documents(sources_dir: Path) -> list[str]:
    """One document per section of the Python documentation, as plain prose paragraphs joined by newlines."""
    docs = []
    for path in sorted(sources_dir.rglob("*.rst.txt")):
        if path.name in SKIPPED_FILES or "includes" in path.parts:
            continue
        for heading, paragraphs in rst_sections(path.read_text(encoding="utf-8")):
            kept = [clean_inline(p) for p in paragraphs]
            kept = [p for p in kept if _is_prose(p)]
            if not kept:
                continue
            text = "\n".join(([heading] if len(heading.split()) >= 1 and len(heading) > 3 else []) + kept)
            if len(text) >= 200:
                docs.append(text)
    return docs


# --------------------------------------------------------------------------------------------------------------
# Assembling, splitting and writing
# --------------------------------------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def deduplicate(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for record in records:
        key = hashlib.sha1(_normalise(record["text"]).encode()).digest()
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def is_validation(text: str) -> bool:
    digest = hashlib.sha256(_normalise(text).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < VALIDATION_PERCENT


def write_jsonl_gz(path: Path, records: list[dict]) -> None:
    """Write records as gzip-compressed JSON lines with a fixed header (mtime 0, no file name): reproducible."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        for record in records:
            gz.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(buffer.getvalue())


def train_tokenizer(texts: list[str], out_dir: Path) -> None:
    """Train a lowercase BERT-style WordPiece tokenizer and save it in transformers' format."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        limit_alphabet=300,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}
    assert list(ids.values()) == [0, 1, 2, 3, 4], ids
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    hf_tokenizer = BertTokenizerFast(
        tokenizer_object=tokenizer,
        do_lower_case=True,
        strip_accents=True,
        model_max_length=4096,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_tokenizer.save_pretrained(str(out_dir))
    # A plain vocab.txt as well, for tools that build a WordPiece tokenizer from it (the "slow" BERT tokenizer).
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    (out_dir / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-dir", type=Path, help="an existing `dpkg -x` tree of the packages (skip download)")
    parser.add_argument("--corpus-dir", type=Path, default=REPO_ROOT / "data" / "corpus")
    parser.add_argument("--tokenizer-dir", type=Path, default=REPO_ROOT / "data" / "tokenizer")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.source_dir is None:
            root, versions = fetch_packages(Path(tmp))
        else:
            root, versions = args.source_dir, {}
        share = root / "usr" / "share"
        records = [{"text": t, "source": "wordnet"} for t in wordnet_documents(share / "wordnet")]
        records += [
            {"text": t, "source": "python-docs"}
            for t in python_doc_documents(share / "doc" / "python3.11" / "html" / "_sources")
        ]

    records = deduplicate(records)
    random.Random(SHUFFLE_SEED).shuffle(records)
    train = [r for r in records if not is_validation(r["text"])]
    validation = [r for r in records if is_validation(r["text"])]
    args.corpus_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_gz(args.corpus_dir / "train.jsonl.gz", train)
    write_jsonl_gz(args.corpus_dir / "validation.jsonl.gz", validation)
    train_tokenizer([r["text"] for r in train], args.tokenizer_dir)

    for name, split in (("train", train), ("validation", validation)):
        by_source = {}
        for r in split:
            by_source.setdefault(r["source"], [0, 0])
            by_source[r["source"]][0] += 1
            by_source[r["source"]][1] += len(r["text"])
        print(name, {k: {"documents": v[0], "characters": v[1]} for k, v in sorted(by_source.items())})
    for path in sorted(args.corpus_dir.glob("*.jsonl.gz")):
        print(path.name, f"{path.stat().st_size / 2**20:.2f} MiB", hashlib.sha256(path.read_bytes()).hexdigest())
    if versions:
        print("packages", versions)


if __name__ == "__main__":
    main()
