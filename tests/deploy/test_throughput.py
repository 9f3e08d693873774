"""Frames/s is quoted at a clock the build measured (report/timing.json: ECP5 post-route,
else xc7 logic delay), naming the estimate, and otherwise at the target clock marked as
assumed: the estimates table, the HTML report, `bnnforge sim`'s summary, the deployment
package. The timing files here stand for what hw/timing.py writes (its own tests run the
tools); what is tested is which clock each report quotes."""
import html
import json
import os
import re
import shutil
import time

import pytest

from bnnforge.hw.throughput import measured_clock, throughput

ASSUMED = "1,562,500 frames/s at an assumed 100 MHz (not measured)"


@pytest.fixture
def build(digits_build, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(digits_build, b, ignore=shutil.ignore_patterns("vivado"))
    return b


def _timing(b, sta=None, pnr=None, top=None):
    t = {"top": top or json.loads((b / "rtl" / "manifest.json").read_text())["top"], "cycles_per_frame": 64}
    if sta is not None:
        t["sta"] = {"estimate": "Yosys sta", "stages": [], "worst_stage": 1, "fmax_mhz": sta}
    if pnr is not None:
        t["pnr"] = {"fmax_mhz": pnr, "start": "s0_acc_reg", "end": "s1_out_reg", "utilization": {}}
    (b / "report" / "timing.json").write_text(json.dumps(t))


def _page_text(b):
    from bnnforge.finn_flows.report_html import write_build_report

    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", write_build_report(b).read_text())))


def test_not_measured_says_assumed(build):
    from bnnforge.finn_flows.steps.estimates import format_table

    est = json.loads((build / "report" / "estimates.json").read_text())
    assert est["cycles_per_frame_ideal"] == 64 and est["fclk_mhz"] == 100.0
    tp = throughput(64, build)
    assert tp == {"frames_per_s": 1_562_500.0, "clock_mhz": 100.0, "measured": False, "source": None,
                  "limit_mhz": None, "target_mhz": 100.0, "text": ASSUMED}
    assert f"(bottleneck MVTU_0, MVTU_1); {ASSUMED}." in format_table(est)
    assert ASSUMED in (build / "report" / "estimates.md").read_text()
    assert ASSUMED in _page_text(build)
    assert "Clock (measured)" not in _page_text(build)


def test_xc7_logic_delay_then_ecp5_post_route(build):
    from bnnforge.finn_flows.steps.synth import restate_estimates

    _timing(build, sta=465.5)
    # the target clock is met: the design runs at its target, not at the logic's limit
    sta = ("1,562,500 frames/s at the 100 MHz target clock (met: 465.5 MHz is the xc7 logic-delay limit "
           "(Yosys sta, no routing: an upper bound))")
    assert throughput(64, build)["text"] == sta
    assert throughput(64, build, 500.0)["text"] == ("up to 7,273,438 frames/s at 465.5 MHz, the xc7 logic-delay "
                                                    "limit (Yosys sta, no routing: an upper bound), below the "
                                                    "500 MHz target")
    restate_estimates(build)
    md = (build / "report" / "estimates.md").read_text()
    assert sta in md and "assumed" not in md and md.endswith("(estimates.png)\n")
    page = _page_text(build)
    assert sta in page and "Clock (measured) xc7 logic delay (Yosys sta, no routing) 465.5 MHz, slowest stage 1" in page

    _timing(build, sta=465.5, pnr=89.5)
    pnr = ("1,398,438 frames/s at 89.5 MHz, the post-route Fmax on a Lattice ECP5 (nextpnr-ecp5, LFE5U-85F), "
           "below the 100 MHz target")
    assert throughput(64, build)["text"] == pnr and measured_clock(build)["source"] == "pnr"
    restate_estimates(build)
    assert pnr in (build / "report" / "estimates.md").read_text()
    assert pnr in _page_text(build) and "critical path s0_acc_reg -> s1_out_reg" in _page_text(build)


def test_stale_or_foreign_timing_is_not_quoted(build):
    _timing(build, sta=465.5)
    later = time.time() + 5
    os.utime(build / "rtl" / "manifest.json", (later, later))  # RTL regenerated after the timing run
    assert throughput(64, build)["text"] == ASSUMED
    _timing(build, sta=465.5, top="another_top")
    os.utime(build / "rtl" / "manifest.json", (0, 0))
    assert measured_clock(build) is None
    _timing(build, sta=None, pnr=None)
    assert measured_clock(build) is None
    (build / "report" / "timing.json").write_text("{not json")
    assert throughput(64, build)["text"] == ASSUMED


def test_sim_summary_quotes_the_throughput():
    from bnnforge.simulate_dataset import format_summary

    r = {"frames": 10, "top": "t", "frames_mismatching": 0, "rtl_beat_mismatches": 0, "tlast_correct": True,
         "cycles_per_frame_measured": 64.0, "cycles_per_frame_ideal": 64, "latency_cycles_first_frame": 90,
         "throughput": throughput(64.0, None, 100.0), "sim_seconds": 1.0, "quantize_golden_seconds": 0.1,
         "chunks": 1, "chunk_size": 256}
    assert f"cycles per frame: measured 64.0, ideal 64 -> {ASSUMED}; first frame out" in format_summary(r)


def test_deployment_package_quotes_the_board_clock(build):
    from bnnforge.deploy import board_throughput

    layout, pj = {"cycles_per_frame_ideal": 64}, {"fclk_mhz": 100.0, "expected_bram18": 0}
    t = board_throughput(build, layout, pj, bitfile=False)
    assert not t["fclk_met_in_vivado"] and t["measured_clock"] is None
    assert t["text"].startswith(f"{ASSUMED}, the FCLK0 the bitstream will run at (64 cycles/frame); no Vivado run")
    assert t["text"].endswith("nothing has measured the design's clock (`bnnforge synth BUILD --timing pnr`).")
    _timing(build, pnr=129.5)
    t = board_throughput(build, layout, pj, bitfile=False)
    assert t["text"].endswith("the build's own estimate allows 129.5 MHz, the post-route Fmax on a Lattice ECP5 "
                              "(nextpnr-ecp5, LFE5U-85F).")
    t = board_throughput(build, layout, pj, bitfile=True)
    assert t["fclk_met_in_vivado"] and t["text"].startswith(
        "1,562,500 frames/s at FCLK0 = 100 MHz (64 cycles/frame), a clock the Vivado run met")
    # a bitstream from a script without the slack check proves nothing about the clock
    assert not board_throughput(build, layout, {"fclk_mhz": 100.0}, bitfile=True)["fclk_met_in_vivado"]
