"""Frames/s at a clock the build measured, and which estimate the clock comes from.

Every frames/s figure bnnforge prints goes through :func:`throughput`, so that none
implies a clock nobody checked. The clock is, best first:

- ``pnr``: the post-route Fmax of the whole design on a Lattice ECP5 (nextpnr-ecp5,
  LFE5U-85F), from ``report/timing.json`` (``bnnforge synth BUILD --timing pnr|both``).
  A routed clock on a slower fabric than the xc7z020.
- ``sta``: the xc7 logic-delay limit of the slowest stage (Yosys ``sta``, cells only, no
  routing), from the same file (the ``synth`` step, or ``--timing sta``). An upper bound:
  routing lowers it.
- otherwise the build's target clock, said to be assumed: "at an assumed 100 MHz (not
  measured)".

A timing report older than the RTL it describes (``rtl/manifest.json``) or for another
top is ignored.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["measured_clock", "target_mhz", "throughput", "describe"]

_BASIS = {
    "pnr": "the post-route Fmax on a Lattice ECP5 (nextpnr-ecp5, LFE5U-85F)",
    "sta": "the xc7 logic-delay limit (Yosys sta, no routing: an upper bound)",
}


def _mhz(v: float) -> str:
    return f"{float(v):.1f}".rstrip("0").rstrip(".")


def measured_clock(build_dir: str | Path | None) -> dict | None:
    """{"mhz", "source" ('pnr' or 'sta'), "basis"} from the build's timing report, or None."""
    if build_dir is None:
        return None
    build_dir = Path(build_dir)
    tpath, mpath = build_dir / "report" / "timing.json", build_dir / "rtl" / "manifest.json"
    try:
        if tpath.stat().st_mtime < mpath.stat().st_mtime:
            return None  # measured on RTL generated before the current one
        timing = json.loads(tpath.read_text())
        top = json.loads(mpath.read_text()).get("top")
    except (OSError, ValueError):
        return None
    if not isinstance(timing, dict) or timing.get("top") != top:
        return None
    for source in ("pnr", "sta"):
        f = (timing.get(source) or {}).get("fmax_mhz")
        if isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0:
            return {"mhz": float(f), "source": source, "basis": _BASIS[source]}
    return None


def target_mhz(build_dir: str | Path | None) -> float:
    """The build's target clock (report/estimates.json fclk_mhz), 100 MHz when unknown."""
    try:
        f = float(json.loads((Path(build_dir) / "report" / "estimates.json").read_text())["fclk_mhz"])
    except (TypeError, OSError, ValueError, KeyError):
        return 100.0
    return f if f > 0 else 100.0


def throughput(cycles_per_frame: float, build_dir: str | Path | None = None,
               assumed_mhz: float | None = None) -> dict:
    """Frames/s at the clock the build runs at: its target clock (*assumed_mhz*, default
    the build's `fclk_mhz`) when a measured limit of *build_dir* reaches it, else that
    limit; without a measurement, the target marked as assumed. A design clocked at its
    target does not run faster because the logic could, so the target caps the figure.

    Returns {"frames_per_s", "clock_mhz", "measured", "source", "limit_mhz", "text"};
    text reads e.g. "1,562,500 frames/s at the 100 MHz target clock (the xc7 logic-delay
    limit is 465.5 MHz: Yosys sta, no routing)"."""
    m = measured_clock(build_dir)
    target = float(assumed_mhz if assumed_mhz is not None else target_mhz(build_dir))
    mhz = min(target, m["mhz"]) if m else target
    fps = mhz * 1e6 / cycles_per_frame if cycles_per_frame and cycles_per_frame > 0 else None
    tp = {"frames_per_s": fps, "clock_mhz": mhz, "measured": m is not None,
          "source": m["source"] if m else None, "limit_mhz": m["mhz"] if m else None, "target_mhz": target}
    tp["text"] = describe(tp)
    return tp


def describe(tp: dict) -> str:
    fps = "n/a frames/s" if tp["frames_per_s"] is None else f"{tp['frames_per_s']:,.0f} frames/s"
    if not tp["measured"]:
        return f"{fps} at an assumed {_mhz(tp['clock_mhz'])} MHz (not measured)"
    basis = _BASIS[tp["source"]]
    target, limit = tp.get("target_mhz"), tp.get("limit_mhz")
    if target is not None and limit is not None and limit >= target:
        return f"{fps} at the {_mhz(target)} MHz target clock (met: {_mhz(limit)} MHz is {basis})"
    # the measured limit is below the target: the design runs at most that fast; logic
    # delay alone bounds the clock from above, so its frames/s is a ceiling
    up_to = "up to " if tp["source"] == "sta" else ""
    below = f", below the {_mhz(target)} MHz target" if target is not None else ""
    return f"{up_to}{fps} at {_mhz(tp['clock_mhz'])} MHz, {basis}{below}"
