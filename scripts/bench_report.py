"""Turns criterion's estimates (target/criterion) and the Python figures into the framer table of
BENCHMARKS.md. Usage: bench_report.py PYTHON_JSON > table.md"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
IMPLS = ["framer-frames", "framer-borrowed", "framer-events", "baseline-split", "baseline-count",
         "tokio-lines", "tokio-any-delimiter"]


def throughput(group, impl):
    est = json.loads((ROOT / group / impl / "new" / "estimates.json").read_text())
    bench = json.loads((ROOT / group / impl / "new" / "benchmark.json").read_text())
    nbytes = bench["throughput"]["Bytes"]
    return nbytes / (est["median"]["point_estimate"] / 1e9)


def main():
    python = json.loads(pathlib.Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else {}
    rows = []
    worst = {"a": 9e9, "lines": 9e9, "any": 9e9, "py": 9e9, "bl": 9e9, "ba": 9e9}
    for delim in ("lf", "crlf"):
        for line in (16, 64, 1024):
            for chunk in (4, 64):
                key = f"{delim}/line{line}/chunk{chunk}k"
                group = key.replace("/", "_")
                t = {i: throughput(group, i) for i in IMPLS}
                best = max(t["framer-frames"], t["framer-events"])
                frames = t["framer-frames"]
                py = python.get(key)
                r = {
                    "a": frames / t["baseline-split"],
                    "ev": t["framer-events"] / t["baseline-split"],
                    "lines": frames / t["tokio-lines"],
                    "any": frames / t["tokio-any-delimiter"],
                    "py": frames / py if py else None,
                    "bl": t["framer-borrowed"] / t["tokio-lines"],
                    "ba": t["framer-borrowed"] / t["baseline-split"],
                }
                worst["bl"] = min(worst["bl"], r["bl"])
                worst["ba"] = min(worst["ba"], r["ba"])
                worst["a"] = min(worst["a"], r["a"], r["ev"])
                worst["lines"] = min(worst["lines"], r["lines"])
                worst["any"] = min(worst["any"], r["any"])
                if py:
                    worst["py"] = min(worst["py"], r["py"])
                term = "`\\n`" if delim == "lf" else "`\\r\\n`"
                py_col = f"{py / 1e9:.3f}" if py else "n/a"
                py_ratio = f"{r['py']:.0f}" if py else "n/a"
                rows.append(
                    f"| {term} | {line} | {chunk} KiB "
                    f"| {frames / 1e9:.2f} | {t['framer-borrowed'] / 1e9:.2f} "
                    f"| {t['framer-events'] / 1e9:.2f} "
                    f"| {t['baseline-split'] / 1e9:.2f} | {t['baseline-count'] / 1e9:.1f} "
                    f"| {t['tokio-lines'] / 1e9:.2f} | {t['tokio-any-delimiter'] / 1e9:.2f} "
                    f"| {py_col} | **{r['a']:.2f}** / {r['ev']:.2f} "
                    f"| {r['lines']:.2f} | {r['bl']:.2f} | {r['any']:.2f} | {py_ratio} |"
                )
    print("| term | line B | chunk | frames GB/s | borrowed GB/s | events GB/s | (a) split GB/s "
          "| (b) count GB/s | LinesCodec GB/s | AnyDelimiter GB/s | Python GB/s "
          "| frames / (a), events / (a) | frames × LinesCodec | borrowed × LinesCodec "
          "| frames × AnyDelimiter | frames × Python |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print(f"Worst cases: vs (a) {worst['a']:.2f}×, vs LinesCodec {worst['lines']:.2f}×, "
          f"vs AnyDelimiterCodec {worst['any']:.2f}×, vs Python {worst['py']:.0f}×; "
          f"borrowed frames: vs (a) {worst['ba']:.2f}×, vs LinesCodec {worst['bl']:.2f}×.")


if __name__ == "__main__":
    main()
