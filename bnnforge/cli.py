"""The `bnnforge` command line: train, eval, export, build, sim, synth, demo.

Every user error prints one line `bnnforge: error: ...` and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bnnforge.errors import BnnforgeError


def _add_model_args(p):
    p.add_argument("--topology", default="digits_mlp", help="tfc, sfc, lfc, cnv, digits_mlp, digits_cnv")
    p.add_argument("--act", default="unipolar", help="bipolar ({-1,+1}) or unipolar ({0,1})")
    p.add_argument("--weight-scaling", default="none", help="none or per_channel")


def _add_data_args(p):
    p.add_argument("--dataset", default="digits", help="digits (bundled), mnist, cifar10")
    p.add_argument("--data-dir", default=None, help="directory of the MNIST IDX files / CIFAR-10 batches")


def _model(args):
    from bnnforge.models.topologies import build_model
    return build_model(args.topology, args.act, args.weight_scaling)


def cmd_train(args):
    if args.method is not None:
        return _train_method(args)
    if args.config or args.param or args.export:
        raise BnnforgeError("--config/--param/--export: only with --method (the reference topologies "
                            "train with `bnnforge train --topology T`, export with `bnnforge export`)")
    from bnnforge.models.data import load_dataset
    from bnnforge.models.train import seed_everything, train

    seed_everything(args.seed)  # the weight init is part of the run
    model = _model(args)
    data = load_dataset(args.dataset, args.data_dir)
    t0 = time.perf_counter()
    res = train(model, data, args.out, epochs=args.epochs or 20, batch_size=args.batch_size, lr=args.lr,
                seed=args.seed, resume=args.resume, meta=model.meta(), progress=not args.quiet)
    print(f"test accuracy {res['test_acc']:.4f} (best {res['best_test_acc']:.4f}) "
          f"in {time.perf_counter() - t0:.1f} s; checkpoint {Path(args.out) / 'checkpoint.pt'}")
    return res


def _train_method(args):
    """`bnnforge train --method NAME`: the network and paper defaults of the method's config."""
    from bnnforge.api import train
    from bnnforge.models.methods.train import parse_param_overrides

    for opt, given in (("--topology", args.topology != "digits_mlp"), ("--act", args.act != "unipolar"),
                       ("--weight-scaling", args.weight_scaling != "none"), ("--resume", args.resume)):
        if given:
            raise BnnforgeError(f"{opt}: not used with --method (the method's config defines the network; "
                                f"change it with --config or --param)")
    params = parse_param_overrides(args.param)
    t0 = time.perf_counter()
    res = train(out=args.out, method=args.method, dataset=args.dataset, data_dir=args.data_dir,
                epochs=args.epochs, seed=args.seed, config=args.config, params=params, export=args.export,
                progress=not args.quiet)
    line = (f"{args.method}: test accuracy {res['test_acc']:.4f} (best {res['best_test_acc']:.4f}) "
            f"in {time.perf_counter() - t0:.1f} s; checkpoint {Path(args.out) / 'checkpoint.pt'}")
    if args.export:
        chk = res["export_check"]
        line += f"; exported {Path(args.out) / 'model.onnx'} (torch vs qonnx max abs diff {chk['max_abs_diff']:.3g})"
    print(line)
    return res


def _load_trained(args):
    from bnnforge.models.train import load_checkpoint

    model = _model(args)
    load_checkpoint(args.checkpoint, model, {"topology": args.topology, "activation": args.act})
    model.eval()
    return model


def cmd_eval(args):
    from bnnforge.models.data import load_dataset
    from bnnforge.models.train import evaluate

    model = _load_trained(args)
    data = load_dataset(args.dataset, args.data_dir)
    loss, acc = evaluate(model, data.test)
    print(f"{args.checkpoint}: test loss {loss:.4f}, accuracy {acc:.4f} on {len(data.test.y)} images")


def cmd_export(args):
    import numpy as np
    import torch
    from bnnforge.models.export import check_export, export_qonnx
    from bnnforge.models.topologies import randomize_batchnorm

    if args.checkpoint:
        model = _load_trained(args)
    else:
        model = _model(args)
        randomize_batchnorm(model, torch.Generator().manual_seed(args.seed))
    model.eval()
    path = export_qonnx(model, args.out, (1,) + tuple(model.spec.input_shape))
    print(f"exported {path}")
    if args.check:
        x = np.random.default_rng(args.seed).random((args.check,) + tuple(model.spec.input_shape), dtype=np.float32)
        r = check_export(model, path, x)
        print(f"check: max abs diff torch vs qonnx = {r['max_abs_diff']:.3g} over {r['inputs']} inputs, "
              f"argmax agreement {r['argmax_agreement']:.4f}")
        if r["max_abs_diff"] > 1e-6:
            raise BnnforgeError(f"{path}: exported graph differs from torch by {r['max_abs_diff']:.3g} (> 1e-6)")


def cmd_build(args):
    from bnnforge.finn_flows.builder import build
    from bnnforge.finn_flows.config import load_config

    overrides = dict(model=args.model, output_dir=args.out, folding_config_file=args.folding, name=args.name,
                     target_fps=args.target_fps, target_cycles_per_frame=args.target_cycles)
    if args.steps:
        overrides["steps"] = args.steps.split(",")
    cfg = load_config(args.config, **overrides)
    summary = build(cfg, progress=not args.quiet)
    est = Path(cfg.output_dir) / "report" / "estimates.md"
    if est.exists():
        print(est.read_text())
    sim = Path(cfg.output_dir) / "report" / "rtlsim.json"
    if "rtlsim" in cfg.steps and sim.exists():
        r = json.loads(sim.read_text())
        print(f"RTL simulation (Verilator): {r['frames']} frames, {r['rtl_mismatches']} mismatches against the "
              f"golden model, {r['cycles_per_frame_measured']:.1f} cycles/frame (ideal {r['cycles_per_frame_ideal']})")
    print(f"build finished in {summary['build_seconds']:.2f} s: {cfg.output_dir}")


def cmd_sim(args):
    """Thin: the work is bnnforge.simulate_dataset.simulate (also the Python API)."""
    from bnnforge.simulate_dataset import format_summary, simulate

    if args.json is not None and Path(args.json).is_dir():
        raise BnnforgeError(f"{args.json}: --json must name a file, not a directory")
    r = simulate(args.build, args.images, args.labels, limit=args.limit, chunk_size=args.chunk,
                 progress=not args.quiet, seed=args.seed, ray=args.ray, address=args.address, workers=args.workers)
    print(format_summary(r))
    if args.json is not None:
        out = Path(args.json)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({k: v for k, v in r.items() if k != "predictions_rtl"}, indent=2) + "\n")
        except OSError as e:
            raise BnnforgeError(f"{out}: cannot write --json ({e.strerror})") from None
        print(f"figures: {out}")
    if r["frames_mismatching"] or not r["tlast_correct"]:
        raise BnnforgeError(f"{args.build}: the RTL differs from the golden model on {r['frames_mismatching']} "
                            f"of {r['frames']} frames")


def cmd_synth(args):
    if args.vivado:
        args.run, args.force, args.no_capacity, args.part, args.jobs = True, False, False, None, 4
        return cmd_vivado(args)
    from bnnforge.api import synthesize

    res = synthesize(args.build)
    md = Path(args.build) / "rtl" / "synth.md"
    print(md.read_text() if md.exists() else json.dumps(res["total"]))
    if args.timing:
        from bnnforge.finn_flows.steps.synth import restate_estimates
        from bnnforge.hw.throughput import throughput
        from bnnforge.hw.timing import build_timing, timing_markdown

        t = build_timing(Path(args.build), args.timing)
        print(timing_markdown(t))
        restate_estimates(Path(args.build))  # report/estimates.md now quotes the measured clock
        print(f"Throughput: {throughput(t['cycles_per_frame'], Path(args.build))['text']}")


def _build_dir(path: str) -> Path:
    b = Path(path)
    if not (b / "rtl" / "manifest.json").is_file():
        raise BnnforgeError(f"{b / 'rtl' / 'manifest.json'}: not found (run `bnnforge build` with the codegen step first)")
    return b


def cmd_vivado(args):
    """Write the Vivado project (Tcl + sources), check the Tcl offline, check capacity
    with Yosys, and with --run start Vivado. Checks that can fail come first."""
    import shutil

    from bnnforge.hw.vivado.project import resolve_board, write_project

    build = _build_dir(args.build)
    resolve_board(args.board, args.part)
    if args.run and shutil.which("vivado") is None:
        raise BnnforgeError("vivado: not found on PATH; source Vivado's settings64.sh (or use docker/finn), "
                            "or drop --run to only write the project")
    out = build / "vivado"
    existed = out.exists()
    proj = write_project(build, board=args.board, part=args.part, jobs=args.jobs)
    try:
        from bnnforge.hw.vivado.tclcheck import check_project, tcl_backend

        if tcl_backend():
            chk = check_project(proj)
            print(f"Tcl check ({chk['backend']}, recording stand-in, not Vivado): {chk['calls']} Vivado calls, "
                  f"all sources present, outputs {', '.join(chk['outputs'])}")
        if not args.no_capacity:
            from bnnforge.hw.vivado.capacity import estimate, require_fit

            rep = estimate(proj)
            print((proj / "capacity.md").read_text())
            if args.force:
                print("--force: not refusing on capacity")
            else:
                for w in require_fit(rep, proj):
                    print(w, file=sys.stderr)
    except BaseException:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)
        raise
    print(f"Vivado project: {proj / 'make_project.tcl'}")
    if args.run:
        import subprocess

        (proj / "output").mkdir(exist_ok=True)
        cmd = ["vivado", "-mode", "batch", "-nojournal", "-log", str(proj / "output" / "vivado.log"),
               "-source", str(proj / "make_project.tcl")]
        print("running: " + " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, cwd=proj).returncode
        name = json.loads((proj / "project.json").read_text())["top"]
        failed = proj / "output" / "check_failed.txt"
        if failed.is_file():  # the script's own checks refused the result (hw/vivado/project.py)
            reason = " ".join(failed.read_text().split())
            raise BnnforgeError(f"{proj / 'output' / 'vivado.log'}: no bitstream copied out: {reason}")
        if rc != 0 or not (proj / "output" / f"{name}.bit").is_file():
            raise BnnforgeError(f"{proj / 'output' / 'vivado.log'}: Vivado failed (exit {rc})")
        print(f"bitstream: {proj / 'output' / (name + '.bit')}")


def cmd_deploy(args):
    from bnnforge.deploy import make_package
    from bnnforge.hw.vivado.project import resolve_board

    build = _build_dir(args.build)
    resolve_board(args.board)
    for opt, f in (("--images", args.images), ("--labels", args.labels)):
        if f is not None and not Path(f).is_file():
            raise BnnforgeError(f"{f}: {opt} file not found")
    if args.labels and not args.images:
        raise BnnforgeError("--labels: needs --images")
    info = make_package(build, args.out or build / "deploy", board=args.board, samples=args.samples,
                        images=args.images, labels=args.labels, verify=not args.no_verify, archive=args.archive)
    if "sim_check" in info:
        c = info["sim_check"]
        print(f"driver on simulated RTL: {c['frames']} inputs, {c['mismatches']} differ from the golden model")
    if not info["bitfile"]:
        print("note: no bitfile yet (run `bnnforge vivado BUILD --run` where Vivado is installed, then deploy again)")
    print(info["path"] + ("\n" + info["archive"] if "archive" in info else ""))


def cmd_finn(args):
    from bnnforge.finn_flows.config import load_folding
    from bnnforge.finn_flows.finn_interop import compare_cycles, finn_available, finn_only_layers, prepare, run_finn

    build = Path(args.build)
    summary = build / "build_summary.json"
    model = Path(args.model) if args.model else None
    if model is None or not model.is_file():
        raise BnnforgeError(f"{args.model}: --model (the exported QONNX file) not found")
    if not args.folding:
        raise BnnforgeError("--folding: a folding JSON is required (the one given to `bnnforge build`)")
    folding = load_folding(Path(args.folding))
    ok, why = finn_available()
    if args.run and not ok:
        raise BnnforgeError(f"FINN is not importable ({why}); use docker/finn (see docker/README.md) "
                            f"or drop --run to only write the FINN inputs")
    est = build / "report" / "estimates.json"
    fclk = json.loads(est.read_text())["fclk_mhz"] if est.is_file() else 100.0
    import shutil
    prep = prepare(model, folding, build / "finn", fclk_mhz=fclk, board=args.board,
                   hw=bool(args.hw and shutil.which("vivado")), folding_source=args.folding)
    print(f"FINN inputs in {build / 'finn'}: model_finn.onnx ({prep['relus_inserted']} Relu inserted before "
          f"unsigned Quant), folding_finn.json, dataflow_build_config.json")
    if args.run:
        run_finn(prep)
        if est.is_file() and summary.is_file():
            out_dir = prep["config"]["output_dir"]
            for r in compare_cycles(out_dir, json.loads(est.read_text())):
                print(f"{r['node']} / {r['finn_node']}: ours {r['our_cycles']:,} cycles, FINN {r['finn_cycles']:,}")
            for name, cycles in finn_only_layers(out_dir).items():
                print(f"(FINN only, host side in our flow) {name}: FINN {cycles:,} cycles with its default folding")


def cmd_demo(args):
    from bnnforge.pipeline import run_demo

    report_dir = run_demo(out=Path(args.out), epochs=args.epochs, quiet=args.quiet, synth=not args.no_synth)
    print(report_dir)


def cmd_sweep(args):
    from bnnforge.sweep import run_sweep

    say = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    out = args.out or str(Path("runs") / ("sweep_" + "".join(c if c.isalnum() or c in "-_" else "_"
                                                              for c in Path(args.sweep).stem)))
    r = run_sweep(args.sweep, out, address=args.address, workers=args.workers, use_ray=not args.no_ray,
                  retry_failed=args.retry_failed, progress=not args.quiet, say=say)
    failed = sum(1 for row in r["rows"] if row.get("status") != "ok")
    print(f"{len(r['rows'])} candidates ({r['computed']} computed, {r['reused']} read back, {failed} failed; "
          f"{r['mode']}): {r['table']['csv']}, {r['table']['html']}" + (f", {r['plot']}" if r["plot"] else ""))


def build_parser():
    from bnnforge import __version__

    ap = argparse.ArgumentParser(prog="bnnforge", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"bnnforge {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train a BNN (a reference topology, or a binarization method)")
    _add_model_args(p); _add_data_args(p)
    p.add_argument("--method", default=None, metavar="NAME",
                   help="sibnn, binary_domain, sdbnn, margin, ftbnn (or the bipolar/unipolar baselines; the residual nets sibnn_resnet, ftbnn_resnet): train with a binarization method and its paper defaults (configs/methods/<method>.yaml)")
    p.add_argument("--config", default=None, help="with --method: another method config (YAML/JSON)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="with --method: override a method parameter (YAML value), repeatable")
    p.add_argument("--export", action="store_true", help="with --method: export OUT/model.onnx and check it")
    p.add_argument("--epochs", type=int, default=None, help="default 20 (with --method: the config's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", default="runs/train")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint")
    _add_model_args(p); _add_data_args(p)
    p.add_argument("--checkpoint", required=True)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("export", help="export to QONNX (random init when no checkpoint)")
    _add_model_args(p)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--out", default="runs/model.onnx")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="execute the export with qonnx on N random inputs and compare with torch")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("build", help="QONNX -> hardware layers -> Verilog (+ rtlsim)")
    p.add_argument("--config", default=None, help="build configuration (YAML/JSON)")
    p.add_argument("--model", default=None)
    p.add_argument("--out", default=None, help="output (build) directory")
    p.add_argument("--folding", default=None, help="FINN-style folding JSON")
    p.add_argument("--target-fps", type=float, default=None,
                   help="choose the folding automatically for this many frames/s (written to BUILD/auto_folding.json)")
    p.add_argument("--target-cycles", type=int, default=None, help="the same target in cycles per frame")
    p.add_argument("--name", default=None, help="top-level module name prefix")
    p.add_argument("--steps", default=None, help="comma-separated step names")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_build)

    p = sub.add_parser("sim", help="run a dataset (.npy) through a build's RTL: accuracy, mismatches, cycles")
    p.add_argument("build", help="build directory (with rtl/)")
    p.add_argument("--images", required=True, help=".npy of float images [N, C, H, W] as the model was trained on")
    p.add_argument("--labels", default=None, help=".npy of the true labels [N]")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--json", default=None, metavar="OUT", help="write the figures to this JSON file")
    p.add_argument("--chunk", type=int, default=256, metavar="N", help="frames per simulation run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ray", action="store_true",
                   help="shard the chunks over Ray workers (bnnforge[cluster]); same figures as a serial run")
    p.add_argument("--address", default=None,
                   help="a Ray cluster for --ray (HOST:PORT, as printed by `ray start --head`; implies --ray); default a local Ray")
    p.add_argument("--workers", type=int, default=None, help="with --ray, local: worker processes (default: the cores)")
    p.set_defaults(fn=cmd_sim)

    p = sub.add_parser("synth", help="Yosys synth_xilinx estimate of a build's RTL")
    p.add_argument("build", help="build directory")
    p.add_argument("--vivado", action="store_true", help="same as `bnnforge vivado BUILD --run`")
    p.add_argument("--board", default="pynq-z2", help="with --vivado: pynq-z1 or pynq-z2")
    p.add_argument("--timing", choices=("sta", "pnr", "both"), default=None,
                   help="also estimate the clock: per-stage xc7 logic delay (Yosys sta), "
                        "ECP5 post-route Fmax (nextpnr-ecp5), or both; writes report/timing.md")
    p.set_defaults(fn=cmd_synth)

    p = sub.add_parser("vivado", help="Vivado project (Tcl) for Pynq-Z1/Z2; capacity check; --run starts Vivado")
    p.add_argument("build", help="build directory (with rtl/)")
    p.add_argument("--board", default="pynq-z2", help="pynq-z1 or pynq-z2")
    p.add_argument("--part", default=None, help="FPGA part (only xc7z020clg400-1)")
    p.add_argument("--run", action="store_true", help="run Vivado (must be on PATH): bitstream, .hwh, reports")
    p.add_argument("--no-capacity", action="store_true", help="skip the Yosys capacity check")
    p.add_argument("--force", action="store_true", help="do not refuse a design the estimate says does not fit")
    p.add_argument("--jobs", type=int, default=4, help="Vivado implementation jobs")
    p.set_defaults(fn=cmd_vivado)

    p = sub.add_parser("deploy", help="board package: bitfile/.hwh (when built), driver, validation, samples")
    p.add_argument("build", help="build directory (with rtl/)")
    p.add_argument("--out", default=None, help="package directory (default BUILD/deploy)")
    p.add_argument("--board", default="pynq-z2", help="pynq-z1 or pynq-z2")
    p.add_argument("--samples", type=int, default=100, help="sample inputs with expected outputs")
    p.add_argument("--images", default=None, help=".npy of float images for the sample (else random inputs)")
    p.add_argument("--labels", default=None, help=".npy of true labels for --images")
    p.add_argument("--no-verify", action="store_true", help="skip running the driver against the simulated RTL")
    p.add_argument("--archive", action="store_true", help="also write PACKAGE.tar.gz")
    p.set_defaults(fn=cmd_deploy)

    p = sub.add_parser("finn", help="hand the exported QONNX model to FINN's build_dataflow")
    p.add_argument("build", help="our build directory (FINN inputs go to BUILD/finn)")
    p.add_argument("--model", required=True, help="the exported QONNX model")
    p.add_argument("--folding", default=None, help="our folding JSON (translated to FINN node names)")
    p.add_argument("--board", default="pynq-z2", help="pynq-z1 or pynq-z2")
    p.add_argument("--run", action="store_true", help="run FINN (must be importable) and compare cycles")
    p.add_argument("--hw", action="store_true", help="with Vivado on PATH: FINN's bitfile steps too")
    p.set_defaults(fn=cmd_finn)

    p = sub.add_parser("sweep", help="design-space sweep (foldings, methods, bits) on Ray: table + Pareto plot")
    p.add_argument("sweep", help="sweep file (YAML)")
    p.add_argument("--out", default=None, help="results directory (default runs/sweep_<name>)")
    p.add_argument("--address", default=None, help="Ray cluster address (HOST:PORT, as printed by `ray start --head`)")
    p.add_argument("--workers", type=int, default=None, help="local Ray: worker processes (default: the cores)")
    p.add_argument("--no-ray", action="store_true", help="run the candidates serially in this process")
    p.add_argument("--retry-failed", action="store_true", help="recompute candidates stored as failed")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("demo", help="the main job: train, export, build, simulate, synthesize, report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--no-synth", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_demo)
    return ap


def _quiet_third_party_warnings():
    """Brevitas warns about an optional CUDA kernel and its own fx deprecation on
    every import; neither concerns a user of this tool."""
    import warnings

    warnings.filterwarnings("ignore", message=".*fast_hadamard_transform.*")
    warnings.filterwarnings("ignore", message=".*brevitas.fx is deprecated.*")
    # numpy's overflow/invalid-value warnings on a user's odd constants would add lines to
    # the one-line error contract; the checks that matter raise errors of their own
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="bnnforge")


def main(argv=None):
    _quiet_third_party_warnings()
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except BnnforgeError as e:
        print(f"bnnforge: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # never a traceback: one line, the traceback in a log file
        import datetime

        from bnnforge.errors import internal_error
        from bnnforge.resources import cache_dir

        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        err = internal_error(e, f"bnnforge {args.cmd}", cache_dir("logs") / f"error-{stamp}-{os.getpid()}.log")
        print(f"bnnforge: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
