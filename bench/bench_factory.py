"""Benchmark: small ODT -> PDF conversions per minute, warm factory instances vs cold soffice.

    python bench/bench_factory.py [--docs 20] [--out bench/results/factory.json]
    python bench/bench_factory.py --quick      # 10 documents: what `make bench` runs (~1 min)

Measures in one run: the factory's LibreOffice backend with 1 and 2 warm instances (start-up not
counted, reported separately), and `soffice --headless --convert-to pdf` started once per document
(sequentially, and two at a time with separate profiles). Uses only the standard library and app.factory.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.factory.converters import LibreOfficeConverter, libreoffice_version
from app.factory.office import OfficePool

FODT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.3"
 office:mimetype="application/vnd.oasis.opendocument.text"><office:body><office:text>
<text:h text:outline-level="1">Benchmark document {n}</text:h>{paras}</office:text></office:body></office:document>"""


def make_docs(workdir: Path, count: int) -> list[Path]:
    """`count` small, distinct ODT files (about two pages each), converted from flat XML."""
    flat_dir = workdir / "flat"
    flat_dir.mkdir()
    para = "<text:p>" + "The quick brown fox jumps over the lazy dog. " * 12 + "</text:p>"
    for n in range(count):
        (flat_dir / f"doc{n:03d}.fodt").write_text(FODT.format(n=n, paras=para * 12), encoding="utf-8")
    out = workdir / "odt"
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation={(workdir / 'gen-profile').as_uri()}",
            "--headless",
            "--convert-to",
            "odt",
            "--outdir",
            str(out),
            *sorted(map(str, flat_dir.glob("*.fodt"))),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return sorted(out.glob("*.odt"))


def warm(docs: list[Path], instances: int, workdir: Path) -> dict:
    with OfficePool(instances, workdir=workdir / f"warm{instances}", restart_every=0) as pool:
        conv = LibreOfficeConverter(pool, timeout=120)
        t0 = time.perf_counter()
        pool.start()
        startup = time.perf_counter() - t0
        jobs = [
            {"doctype": "odt", "format": "pdf", "document": base64.b64encode(p.read_bytes()).decode()}
            for p in docs
        ]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(instances) as ex:
            results = list(ex.map(conv.convert, jobs))
        elapsed = time.perf_counter() - t0
    assert all(fmt == "pdf" and data.startswith(b"%PDF") for fmt, data in results)
    return {
        "docs": len(docs),
        "seconds": round(elapsed, 3),
        "startup_seconds": round(startup, 3),
        "per_minute": round(len(docs) * 60 / elapsed, 1),
    }


def cold(docs: list[Path], parallel: int, workdir: Path) -> dict:
    base = workdir / f"cold{parallel}"
    profiles = [base / f"profile{i}" for i in range(parallel)]
    for prof in profiles:  # create each profile once, as a host running cold conversions would have
        subprocess.run(
            ["soffice", f"-env:UserInstallation={prof.as_uri()}", "--headless", "--terminate_after_init"],
            capture_output=True,
            timeout=120,
            check=False,
        )
    free = list(profiles)
    lock = threading.Lock()

    def one(doc: Path) -> None:
        with lock:
            prof = free.pop()
        try:
            subprocess.run(
                [
                    "soffice",
                    f"-env:UserInstallation={prof.as_uri()}",
                    "--headless",
                    "--convert-to",
                    "pdf",
                    "--outdir",
                    str(base / "out"),
                    str(doc),
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
        finally:
            with lock:
                free.append(prof)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as ex:
        list(ex.map(one, docs))
    elapsed = time.perf_counter() - t0
    produced = len(list((base / "out").glob("*.pdf")))
    assert produced == len(docs), f"cold run produced {produced} of {len(docs)} PDFs"
    return {"docs": len(docs), "seconds": round(elapsed, 3), "per_minute": round(len(docs) * 60 / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=None, help="documents per measurement (default 20; 10 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run for `make bench` (10 documents)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "factory.json"))
    args = parser.parse_args(argv)
    if args.docs is None:
        args.docs = 10 if args.quick else 20
    if args.docs < 1:
        parser.error("--docs must be at least 1")
    if not shutil.which("soffice"):
        print("bench_factory: soffice is not installed (scripts/install-libreoffice.sh)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="convhub-bench-") as tmp:
        workdir = Path(tmp)
        docs = make_docs(workdir, args.docs)
        results = {
            "cold_1": cold(docs, 1, workdir),
            "cold_2_parallel": cold(docs, 2, workdir),
            "warm_1": warm(docs, 1, workdir),
            "warm_2": warm(docs, 2, workdir),
        }
    results["speedup_warm2_vs_cold1"] = round(
        results["warm_2"]["per_minute"] / results["cold_1"]["per_minute"], 2
    )
    results["speedup_warm1_vs_cold1"] = round(
        results["warm_1"]["per_minute"] / results["cold_1"]["per_minute"], 2
    )
    results["quick"] = bool(args.quick)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "libreoffice": libreoffice_version(),
        "platform": platform.platform(),
    }
    for key in ("cold_1", "cold_2_parallel", "warm_1", "warm_2"):
        r = results[key]
        extra = f", start-up {r['startup_seconds']} s" if "startup_seconds" in r else ""
        print(
            f"{key:16s} {r['per_minute']:7.1f} conversions/min ({r['docs']} docs in {r['seconds']} s{extra})"
        )
    print(
        f"warm x2 vs cold: {results['speedup_warm2_vs_cold1']}x   warm x1 vs cold: {results['speedup_warm1_vs_cold1']}x"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
