"""Score candidate strains' DNA sequences with a small, fixed k-mer model, and pick the best.

A stand-in, not a biological model: each sequence becomes the counts of its overlapping
3-mers (64 features); its score is the dot product of those counts with the integer weights
of ``weights.json`` (see the README for the rule that made them), divided by the number of
3-mers. All arithmetic on the counts and weights is integer, and the one division is a single
correctly rounded IEEE operation, so any numpy (1.24 of Debian 12, 2.x of a venv) and any
machine give the same bytes.

    python3 screen.py candidates.csv weights.json out/    # writes out/scores.csv, out/top.csv

Only numpy and the standard library: it runs inside the provider's sandbox, where the host's
/usr is all there is (Debian: apt-get install python3-numpy).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALPHABET = "ACGT"
#: How many of the best candidates go into top.csv (the seed: 10 strains screened a day).
TOP = 10


class BadInput(ValueError):
    """A candidate or weights file the model cannot read; the message names what and where."""


def load_weights(text: str) -> tuple[int, np.ndarray]:
    """k and the integer weight vector (index: the k-mer's digits in base 4, A=0 C=1 G=2 T=3)."""
    spec = json.loads(text)
    k = int(spec["k"])
    if spec.get("alphabet") != ALPHABET or not 1 <= k <= 6:
        raise BadInput("weights.json: needs alphabet ACGT and 1 <= k <= 6")
    table = spec["weights"]
    if len(table) != 4**k:
        raise BadInput(f"weights.json: {len(table)} weights; k={k} needs {4**k}")
    w = np.zeros(4**k, dtype=np.int64)
    for kmer, value in table.items():
        if len(kmer) != k or any(c not in ALPHABET for c in kmer) or int(value) != value:
            raise BadInput(f"weights.json: {kmer!r}: {value!r} is not a {k}-mer with an integer")
        w[kmer_index(kmer)] = int(value)
    return k, w


def kmer_index(kmer: str) -> int:
    i = 0
    for c in kmer:
        i = 4 * i + ALPHABET.index(c)
    return i


_CODE = np.full(256, -1, dtype=np.int64)
for _n, _c in enumerate(ALPHABET):
    _CODE[ord(_c)] = _n
    _CODE[ord(_c.lower())] = _n


def features(sequence: str, k: int) -> np.ndarray:
    """Counts of the sequence's overlapping k-mers (length 4**k, int64)."""
    codes = _CODE[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
    if len(codes) < k or (codes < 0).any():
        raise BadInput(f"needs at least {k} letters, all of A, C, G, T")
    idx = np.zeros(len(codes) - k + 1, dtype=np.int64)
    for j in range(k):
        idx = 4 * idx + codes[j : len(codes) - k + 1 + j]
    return np.bincount(idx, minlength=4**k).astype(np.int64)


@dataclass(frozen=True)
class Scored:
    id: str
    length: int
    #: Integer: the k-mer counts times the weights.
    raw: int
    #: ``raw`` over the number of k-mers (one IEEE division).
    per_kmer: float
    #: 1 = best; ties by id.
    rank: int

    def line(self) -> str:
        return f"{self.id},{self.length},{self.raw},{self.per_kmer:.6f},{self.rank}\n"


def score(rows: list[tuple[str, str]], k: int, w: np.ndarray) -> list[Scored]:
    """Each candidate's length, raw score, score per k-mer and rank, in input order."""
    if not rows:
        return []
    x = np.zeros((len(rows), len(w)), dtype=np.int64)
    for n, (cid, seq) in enumerate(rows):
        try:
            x[n] = features(seq, k)
        except (BadInput, UnicodeEncodeError) as err:
            raise BadInput(f"candidate {cid!r}: {err}") from None
    raw = [int(r) for r in (x @ w).tolist()]
    per = [r / int(c) for r, c in zip(raw, x.sum(axis=1).tolist(), strict=True)]
    order = sorted(range(len(rows)), key=lambda n: (-per[n], rows[n][0]))
    rank = {n: r for r, n in enumerate(order, 1)}
    return [Scored(cid, len(seq), raw[n], per[n], rank[n]) for n, (cid, seq) in enumerate(rows)]


def read_candidates(text: str) -> list[tuple[str, str]]:
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"id", "sequence"} <= set(reader.fieldnames):
        raise BadInput("candidates: needs a header with the columns id and sequence")
    rows = [(r["id"].strip(), r["sequence"].strip()) for r in reader]
    seen: set[str] = set()
    for line, (cid, _) in enumerate(rows, 2):
        if not cid or cid in seen:
            raise BadInput(f"candidates line {line}: the id {cid!r} is empty or repeated")
        seen.add(cid)
    return rows


def render(scored: list[Scored]) -> tuple[str, str]:
    """scores.csv (input order) and top.csv (the best TOP, best first)."""
    head = "id,length,raw_score,score_per_kmer,rank\n"
    best = sorted(scored, key=lambda x: x.rank)[:TOP]
    return head + "".join(x.line() for x in scored), head + "".join(x.line() for x in best)


def run(candidates: str, weights: str) -> tuple[str, str]:
    """The two output files' text for the two input files' text."""
    k, w = load_weights(weights)
    return render(score(read_candidates(candidates), k, w))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: screen.py CANDIDATES.csv WEIGHTS.json OUT_DIR", file=sys.stderr)
        return 2
    cand, weights, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    try:
        scores, top = run(cand.read_text(encoding="utf-8"), weights.read_text(encoding="utf-8"))
    except (BadInput, OSError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.csv").write_text(scores, encoding="utf-8")
    (out / "top.csv").write_text(top, encoding="utf-8")
    n = scores.count("\n") - 1
    best = top.splitlines()[1] if n else "-"
    print(f"scored {n} candidates with numpy {np.__version__}; best: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
