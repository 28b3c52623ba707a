"""Does any wrong or right answer change verdict from draw to draw? (issue 23)

For each seed, every catalogue pitfall and every entry of tests/corpus_issue23.py is decided in process
(``compare.decide`` on a record made by running the scenarios here, as tests/test_probe_compare.py
does); a variant is stable when it loses the same cells (its grade) on every seed. Prints one line per
variant whose cells change (UNSTABLE) or whose scenarios change within the same cells (within a cell:
the grade holds), then a summary. Usage (from the course root, a few minutes per ten seeds):

    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/verdict_stability.py FIRST_SEED COUNT
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import corpus_issue23 as corpus  # noqa: E402
import test_discrimination as D  # noqa: E402
from conftest import CATALOGUE, SPEC  # noqa: E402

from g2c.grading import compare  # noqa: E402


def variants() -> dict[str, dict]:
    out = {f"pitfall {p.name}": D.pitfall_namespace(p.name) for p in CATALOGUE.pitfalls}
    out |= {f"{'wrong' if e.wrong else 'right'}: {e.name}": D.namespace_of(e) for e in corpus.WRONG + corpus.RIGHT}
    return out | {"reference": D.T.student()}


def main(first: int, count: int) -> int:
    seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    start = time.perf_counter()
    named = variants()
    for seed in range(first, first + count):
        for name, namespace in named.items():
            failed, _ = D.lost(namespace, seed)
            seen[name][tuple(sorted(failed))] += 1
        compare.mutant_data.cache_clear()
        compare.reference_data.cache_clear()
        print(f"seed {seed} done, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    cell = {s: g.grade_id for g in SPEC.graded.values() for s in g.scenarios}
    cells = {name: {tuple(sorted({cell[s] for s in k})) for k in c} for name, c in seen.items()}
    unstable = {name: dict(c) for name, c in seen.items() if len(cells[name]) > 1}
    for name, verdicts in seen.items():
        if len(verdicts) > 1:
            label = "UNSTABLE" if name in unstable else "within a cell"
            print(f"{label} {name}: " + "; ".join(f"{list(k) or 'full marks'} on {n}" for k, n in verdicts.items()))
    print(json.dumps({"seeds": count, "first": first, "variants": len(seen), "unstable": len(unstable),
                      "verdicts": {name: [list(k) for k in c] for name, c in seen.items()}}))
    return 1 if unstable else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
