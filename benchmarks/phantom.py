"""Phantom generation throughput (patients/s) for the default export.

Usage: python benchmarks/phantom.py [--patients 120] [--size 256] [--slices 16]

Generates the default phantom (120 patients, 256 px, 16 slices, T1c, pre only) into a
temporary folder and reports wall time, CPU time, patients/s and the share of time spent
rendering versus writing DICOM/NIfTI.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from npcai.cohort.phantom import generate_phantom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=120)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--slices", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="npcai-bench-") as tmp:
        out = Path(tmp) / "export"
        prof = cProfile.Profile()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        prof.enable()
        summary = generate_phantom(out, patients=args.patients, size=args.size, slices=args.slices)
        prof.disable()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    stats = pstats.Stats(prof)
    def cum(name: str) -> float:
        return sum(v[3] for k, v in stats.stats.items() if k[2] == name)
    render = cum("render_tissues") + cum("to_intensities")
    write = cum("write_series") + cum("write_contour")
    print(f"phantom: {args.patients} patients x {args.size} px x {args.slices} slices, T1c, pre")
    print(f"  wall {wall:.1f} s, CPU {cpu:.1f} s, {summary['files']} DICOM files, {size_mb:.0f} MB")
    print(f"  throughput {args.patients / wall:.2f} patients/s (wall), {args.patients / cpu:.2f} patients/s (CPU)")
    print(f"  profile: rendering {render:.1f} s, writing DICOM/NIfTI {write:.1f} s "
          f"(ratio render/write {render / max(write, 1e-9):.2f})")


if __name__ == "__main__":
    main()
