"""Regenerate ``tasks/amazon_split.json``: the membership of Meta-KD's official Amazon split.

Run once, from the repository root, where pandas and scikit-learn are installed (``pip install -e
".[dev]"`` installs both; kdbench itself never imports them)::

    python tasks/make_amazon_split.py --data-dir ../shared/data          # writes tasks/amazon_split.json
    python tasks/make_amazon_split.py --data-dir ../shared/data --check  # compares, writes nothing

The procedure is the one of the official preprocessing script, alibaba/EasyNLP
``examples/knowledge_distillation/metakd/generate_senti_data.py`` (alibaba/EasyTransfer
``scripts/metaKD`` at 05d2b48 prepares the same SENTI data):

1. One table of all 8,000 reviews, domains in the order books, dvd, electronics, kitchen; within a
   domain the positive file's reviews, then the negative file's, each in file order.
2. ``DataFrame.sample(frac=1.0, random_state=11111)``.
3. Fold 0 of ``StratifiedKFold(n_splits=10, shuffle=True, random_state=11111)`` stratified on the
   sentiment alone (not the domain) is **test**.
4. Fold 0 of a fresh splitter with the same arguments on the remaining rows is **dev**; the rest is
   **train**.

Only the order of the rows and their sentiment decide the membership, so the table carries kdbench's
ids (``<domain>/<pos|neg>/<index in file>``) instead of the texts. :func:`official_reviews`
re-implements the official line-based reader (written here, not copied) so that the tests can check
that it counts the same 1,000 reviews per file, in the same order, as kdbench's block parser.

The output lists the ids of each split in the official (shuffled) order, the library versions used,
and a sha256 of the id lists (:func:`splits_sha256`), which ``kdbench_tasks.amazon`` pins and checks
every time it loads the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

SEED = 11111
#: the official script's domain order and directory names; the domain name is the part before "_"
OFFICIAL_DOMAINS = ("books", "dvd", "electronics", "kitchen_&_housewares")
OUT = Path(__file__).with_name("amazon_split.json")


def official_reviews(path: Path) -> list[str]:
    """The review texts of one ``.review`` file as the official line-based reader yields them.

    Its rules (EasyNLP ``generate_senti_data.py``, ``extract_files``): a review starts at a line that
    is exactly ``<review_text>`` and ends at a line that is exactly ``</review_text>``; the lines in
    between are concatenated *without* a separator onto an initial single space, each without its
    final character (the newline); a line of length <= 1 appends the previous line's text again;
    a line starting with a tab loses the tab and one more final character; tabs become spaces. The
    official script reads strict UTF-8 (the copy in ``../shared/data`` decodes strictly); undecodable
    bytes are replaced here (U+FFFD) so that another copy still parses, which changes no line
    boundary. (The official function also carries the
    "previous line" from the positive file into the negative one; here each file starts afresh. Both
    touch only texts, never the count or order of reviews.)
    """
    texts: list[str] = []
    inside = False
    current = ""
    last = ""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        if line == "<review_text>\n":
            inside, current = True, " "
            continue
        if line == "</review_text>\n":
            inside = False
            texts.append(current.replace("\t", " "))
            continue
        if inside:
            if len(line) > 1:
                last = line[:-1]
                if last[0] == "\t":
                    last = last[1:-1]
            current += last
    return texts


def official_table(sorted_data_acl: Path) -> list[tuple[str, str]]:
    """``(kdbench id, sentiment)`` of all 8,000 reviews in the official table's row order."""
    rows: list[tuple[str, str]] = []
    for directory in OFFICIAL_DOMAINS:
        domain = directory.split("_")[0]
        for stem, tag in (("positive", "pos"), ("negative", "neg")):
            n = len(official_reviews(sorted_data_acl / directory / f"{stem}.review"))
            rows += [(f"{domain}/{tag}/{i}", stem) for i in range(n)]
    return rows


def official_split(rows: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Run the official shuffle and the two ``StratifiedKFold`` fold-0 hold-outs on ``rows``."""
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    df = pd.DataFrame(rows, columns=["id", "sentiment"]).sample(frac=1.0, random_state=SEED)
    rest_idx, test_idx = next(StratifiedKFold(n_splits=10, shuffle=True, random_state=SEED)
                              .split(df, df["sentiment"]))
    rest, test = df.iloc[rest_idx], df.iloc[test_idx]
    train_idx, dev_idx = next(StratifiedKFold(n_splits=10, shuffle=True, random_state=SEED)
                              .split(rest, rest["sentiment"]))
    return {"train": list(rest.iloc[train_idx]["id"]), "dev": list(rest.iloc[dev_idx]["id"]),
            "test": list(test["id"])}


def splits_sha256(splits: dict[str, list[str]]) -> str:
    """sha256 of the id lists: each split's name, then its ids in order, NUL-separated."""
    h = hashlib.sha256()
    for name in ("train", "dev", "test"):
        h.update(name.encode())
        for i in splits[name]:
            h.update(b"\0" + i.encode())
    return h.hexdigest()


def build(sorted_data_acl: Path) -> dict[str, object]:
    import numpy
    import pandas
    import sklearn

    splits = official_split(official_table(sorted_data_acl))
    return {
        "description": "Meta-KD's official Amazon split (EasyNLP examples/knowledge_distillation/metakd/"
                       "generate_senti_data.py), as kdbench ids <domain>/<pos|neg>/<index in file>; "
                       "made by tasks/make_amazon_split.py",
        "versions": {"pandas": pandas.__version__, "scikit-learn": sklearn.__version__,
                     "numpy": numpy.__version__},
        "sha256": splits_sha256(splits),
        "splits": splits,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="holds amazon/sorted_data_acl/")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = p.parse_args(argv)
    made = build(args.data_dir / "amazon" / "sorted_data_acl")
    if args.check:
        old = json.loads(args.out.read_text())
        same = old["splits"] == made["splits"] and old["sha256"] == made["sha256"]
        print("identical" if same else "DIFFERENT", made["sha256"])
        return 0 if same else 1
    args.out.write_text(json.dumps(made, indent=0) + "\n")
    print(f"wrote {args.out}: sha256 {made['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
