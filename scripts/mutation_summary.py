"""Per-module mutation figures from mutmut's results in mutants/ (`make mutation-report`).

mutmut keeps one `<module>.py.meta` file per mutated module, holding each mutant's exit code;
this prints, per module, how many mutants there are and how many were killed, survived, timed
out, had no covering test or were not checked (a run stopped before reaching them).
"""

import json
import sys
from collections import Counter
from pathlib import Path

# mutmut 3's meaning of a worker's exit code (mutmut/stats.py: status_by_exit_code).
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "type check",
    2: "interrupted",
    -11: "segfault",
    -9: "segfault",
    None: "not checked",
}
COLUMNS = ["killed", "survived", "timeout", "no tests", "not checked", "other"]


def main() -> int:
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        print("no results in mutants/: run `make mutation` first")
        return 1
    rows, total = [], Counter()
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(STATUS.get(code, "other") for code in codes.values())
        counts = Counter({c if c in COLUMNS else "other": n for c, n in counts.items()})
        counts["mutants"] = len(codes)
        total.update(counts)
        rows.append((str(meta.relative_to("mutants"))[: -len(".meta")], counts))
    rows.append(("total", total))
    header = ["module", "mutants", *COLUMNS, "score"]
    print(" | ".join(header))
    for name, counts in rows:
        tested = counts["killed"] + counts["survived"] + counts["timeout"]
        score = f"{100 * (counts['killed'] + counts['timeout']) / tested:.1f}%" if tested else "-"
        print(" | ".join([name, str(counts["mutants"]), *(str(counts[c]) for c in COLUMNS), score]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
