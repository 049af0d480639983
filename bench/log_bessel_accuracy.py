"""Accuracy of curvkit.special's log I_v(x) and log K_v(x) against the high-precision reference
in tests/data, per region, beside SciPy's log(ive(v, x)) + x and log(kve(v, x)) - x; prints a
Markdown table for RESULTS.md and, where matplotlib is installed, writes heat maps of the error
over the (log10 v, log10 x) plane.

Run from the repository root: python bench/log_bessel_accuracy.py [--png DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os

import numpy as np
from scipy import special as sc

from curvkit import special

EPS = np.finfo(np.float64).eps
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "log_bessel_reference.csv.gz")


def load():
    rows = []
    with gzip.open(DATA, "rt") as f:
        for line in f:
            if not line.startswith("#"):
                rows.append([float(t) for t in line.split(",")[:6]])
    a = np.array(rows)
    return a[:, 0], a[:, 1], {"log_iv": a[:, 2], "log_kv": a[:, 3], "iv_ratio": a[:, 4],
                              "dlog_kv": a[:, 5]}


def scaled(c, r, v, x):
    with np.errstate(invalid="ignore"):
        e = np.abs(c - r) / (EPS * np.maximum(np.maximum(np.abs(r), 1.0), np.hypot(v, x)))
    return np.where(np.isfinite(c), e, np.inf)


REGIONS = [
    ("v < 21.4", lambda v, x: v < 21.4),
    ("v >= 21.4, x < 0.5 v", lambda v, x: (v >= 21.4) & (x < 0.5 * v)),
    ("v >= 21.4, x in [0.5 v, 2 v]", lambda v, x: (v >= 21.4) & (x >= 0.5 * v) & (x <= 2 * v)),
    ("v >= 21.4, x > 2 v", lambda v, x: (v >= 21.4) & (x > 2 * v)),
    ("all", lambda v, x: np.ones_like(v, bool)),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--png", help="folder for heat maps (needs matplotlib)")
    args = ap.parse_args()
    v, x, ref = load()
    with np.errstate(all="ignore"):
        peers = {"log_iv": np.log(sc.ive(v, x)) + x, "log_kv": np.log(sc.kve(v, x)) - x}
    ours = {name: getattr(special, name)(v, x) for name in ("log_iv", "log_kv")}
    print(f"{len(v)} reference points; error in units of eps * max(|ref|, 1, hypot(v, x))\n")
    print("| region | points | log I curvkit | log I SciPy | log K curvkit | log K SciPy |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, sel in REGIONS:
        m = sel(v, x)
        cells = []
        for name in ("log_iv", "log_kv"):
            e_ours = scaled(ours[name][m], ref[name][m], v[m], x[m])
            e_peer = scaled(peers[name][m], ref[name][m], v[m], x[m])
            bad = int(np.count_nonzero(~np.isfinite(peers[name][m])))
            fin = e_peer[np.isfinite(e_peer)]
            peer_txt = (f"{fin.max():.3g}" if fin.size else "-") + (f" ({bad} non-finite)"
                                                                    if bad else "")
            cells += [f"{e_ours.max():.2f}", peer_txt]
        print(f"| {label} | {int(m.sum())} | " + " | ".join(cells) + " |")
    for name in ("iv_ratio", "dlog_kv"):
        c = getattr(special, name)(v, x)
        rel = np.abs(c - ref[name]) / (EPS * np.abs(ref[name]))
        print(f"\n{name}: max relative error {rel.max():.2f} ulps (median {np.median(rel):.2f})")
    if args.png:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no heat maps")
            return
        os.makedirs(args.png, exist_ok=True)
        lv, lx = np.log10(np.maximum(v, 1e-2)), np.log10(x)
        for name in ("log_iv", "log_kv"):
            fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
            for ax, (label, vals) in zip(axes, (("curvkit", ours[name]), ("SciPy", peers[name]))):
                e = np.log10(np.clip(scaled(vals, ref[name], v, x), 0.1, 1e17))
                sc_ = ax.scatter(lv, lx, c=e, s=8, cmap="viridis", vmin=-1, vmax=17)
                ax.set_title(f"{name}: {label}")
                ax.set_xlabel("log10 v")
            axes[0].set_ylabel("log10 x")
            fig.suptitle("log10 of the scaled error in ulps; non-finite values at the top of the scale")
            fig.colorbar(sc_, ax=axes)
            fig.savefig(os.path.join(args.png, f"{name}_error.png"), dpi=120)


if __name__ == "__main__":
    main()
