"""Rebuild test.csv / validation.csv / provenance.csv from the original STS Benchmark release.

Usage (offline):  python convert.py PATH/TO/Stsbenchmark.tar.gz  [OUT_DIR]
The tarball is the 2017 release (members stsbenchmark/sts-{dev,test}.csv); see README.md.

Only the sub-collections whose licenses allow redistributing them here are kept (see README.md, License):
images, track5.en-en, headlines, and the test split's answer-answer pairs (Stack Exchange, CC BY-SA 3.0,
with their attribution in provenance.csv). MSRpar and MSRvid (Microsoft Research's own terms) and the dev
split's answers-forums pairs (released without the attribution CC BY-SA 3.0 asks for) are left out.

The source files are tab separated with no quoting at all (sentences contain bare
double quotes), so each line is split on tabs rather than read with a csv dialect:
genre, file, year, id, score, sentence1, sentence2 [, source1, source2].
Sentences and scores are copied unchanged (score written as a float, 0-5).
"""

import csv
import sys
import tarfile
from pathlib import Path

SPLITS = {"test": "stsbenchmark/sts-test.csv", "validation": "stsbenchmark/sts-dev.csv"}
EXPECTED = {"test": 1379, "validation": 1500}  # rows in the release, before the license filter
LEFT_OUT = {"MSRpar", "MSRvid", "answers-forums"}  # sub-collections (column `file`) not redistributed here


def read_split(tar, member):
    rows = []
    for n, line in enumerate(tar.extractfile(member).read().decode("utf-8").splitlines(), 1):
        f = line.split("\t")
        if len(f) not in (7, 9):
            raise ValueError(f"{member}:{n}: {len(f)} fields")
        score = float(f[4])
        if not 0.0 <= score <= 5.0:
            raise ValueError(f"{member}:{n}: score {score} outside [0, 5]")
        rows.append((f, score))
    return rows


def main(src, out):
    out = Path(out)
    prov = [("split", "row", "genre", "file", "year", "sts_id", "source1", "source2")]
    with tarfile.open(src) as tar:
        for split, member in SPLITS.items():
            rows = read_split(tar, member)
            assert len(rows) == EXPECTED[split], (split, len(rows))
            rows = [(f, score) for f, score in rows if f[1] not in LEFT_OUT]
            with open(out / f"{split}.csv", "w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(("sentence1", "sentence2", "score"))
                for f, score in rows:
                    w.writerow((f[5], f[6], score))
            for i, (f, _) in enumerate(rows):
                prov.append((split, i, *f[0:4], *(f[7:9] if len(f) == 9 else ("", ""))))
    with open(out / "provenance.csv", "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(prov)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else Path(__file__).resolve().parent)
