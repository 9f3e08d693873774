"""Offline check of a generated Vivado project script -- NOT a Vivado run.

The script is executed by a real Tcl interpreter (Python's built-in `tkinter.Tcl()`,
which needs no display, or `tclsh` when tkinter is missing) against a *recording
stand-in*: every Vivado command the script calls is a Tcl proc defined here that
records its arguments and checks what can be checked without Vivado:

- the script parses and runs to the end in real Tcl (syntax, variables, quoting);
- it calls only the Vivado commands below (any other is "invalid command name");
- every file given to add_files exists at that moment;
- `create_bd_cell -type module -reference M` names a module defined in an added file,
  and `get_bd_intf_pins cell/s_axis` etc. name AXI-Stream ports that module has;
- its outputs are copied to output/ (the stand-in's launch_runs leaves placeholder
  files where Vivado would write the bitstream and the .hwh);
- its own result checks work: a *scenario* sets what the stand-in's "Vivado" reports
  (a `$readmem` critical warning in the accelerator's synthesis log, the block RAM
  cells inside the accelerator, the worst setup/hold slack and its path), and the
  tests run the script once per branch: each failure must stop it before anything is
  copied to output/, the default scenario (everything as the build expects) must pass.

What it cannot tell: whether Vivado accepts the IP configuration, whether the design
meets timing, or whether the bitstream works. The check runs on a copy of the project
directory, so placeholders never land next to real results.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bnnforge.errors import BnnforgeError

VIVADO_COMMANDS = [
    "get_board_parts", "create_project", "set_property", "current_project", "current_fileset",
    "add_files", "get_files", "update_compile_order", "create_bd_design", "create_bd_cell",
    "apply_bd_automation", "get_bd_cells", "get_bd_pins", "get_bd_intf_pins", "connect_bd_net",
    "connect_bd_intf_net", "assign_bd_address", "validate_bd_design", "save_bd_design",
    "generate_target", "make_wrapper", "launch_runs", "wait_on_run", "get_property", "get_runs",
    "open_run", "report_utilization", "report_timing_summary", "get_cells", "get_clocks",
    "get_timing_paths",
]

# What the stand-in's Vivado reports by default: everything as the build expects.
DEFAULT_SCENARIO = {"readmem_warning": "", "bram18": None, "setup_slack": 0.412, "hold_slack": 0.051,
                    "path_from": "bnn_bd_i/accel/inst/s1_mvtu/acc_reg[3]/C",
                    "path_to": "bnn_bd_i/accel/inst/s1_mvtu/out_reg[0]/D", "clocks": 1}
# scenario values go into Tcl braces: no braces, backslashes or newlines
_SCENARIO_VALUE = re.compile(r"^[^{}\\\n]*$")

STANDIN = r"""
set ::rec {}
set ::printed {}
set ::added {}
set ::cells [dict create]
set ::proj_dir ""
set ::proj_name ""
proc _rec {cmd args} { lappend ::rec [list $cmd {*}$args] }
proc _opt {name argl {default ""}} {
    set i [lsearch -exact $argl $name]
    if {$i < 0} { return $default }
    return [lindex $argl [expr {$i + 1}]]
}
proc get_board_parts {args} { _rec get_board_parts {*}$args
    set pat [lindex $args end]
    set known {tul.com.tw:pynq-z2:part0:1.0 www.digilentinc.com:pynq-z1:part0:1.0}
    set out {}
    foreach b $known { if {[string match $pat $b]} { lappend out $b } }
    return $out }
proc create_project {args} { _rec create_project {*}$args
    set pos {}
    foreach a $args { if {[string index $a 0] ne "-"} { lappend pos $a } }
    set ::proj_name [lindex $pos 0]; set ::proj_dir [lindex $pos 1]
    if {[_opt -part $args] eq ""} { error "create_project: no -part" }
    file mkdir $::proj_dir; return $::proj_name }
proc current_project {args} { _rec current_project {*}$args; return $::proj_name }
proc current_fileset {args} { _rec current_fileset {*}$args; return sources_1 }
proc set_property {args} { _rec set_property {*}$args; return "" }
proc add_files {args} { _rec add_files {*}$args
    set files [lindex $args end]
    if {[llength $files] == 0} { error "add_files: no files" }
    foreach f $files {
        if {![file isfile $f]} { error "add_files: file does not exist: $f" }
        lappend ::added $f
    }
    return $files }
proc get_files {args} { _rec get_files {*}$args
    set pat [lindex $args end]
    set out {}
    foreach f $::added { if {$f eq $pat || [file tail $f] eq $pat || [string match *$pat $f]} { lappend out $f } }
    if {[llength $out] == 0} {
        foreach p $pat { if {[lsearch -exact $::added $p] >= 0} { lappend out $p } }
    }
    if {[llength $out] == 0} { error "get_files: nothing matches $pat" }
    return $out }
proc update_compile_order {args} { _rec update_compile_order {*}$args }
proc create_bd_design {args} { _rec create_bd_design {*}$args
    set ::bd [lindex $args end]
    set ::bd_file [file join $::proj_dir $::proj_name.srcs sources_1 bd $::bd $::bd.bd]
    file mkdir [file dirname $::bd_file]
    set fh [open $::bd_file w]; puts $fh "stand-in"; close $fh
    lappend ::added $::bd_file
    return $::bd }
proc _module_ports {mod} {
    foreach f $::added {
        if {[file extension $f] ne ".v"} continue
        set fh [open $f]; set text [read $fh]; close $fh
        set i [string first "module $mod (" $text]
        if {$i < 0} continue
        set j [string first ");" $text $i]
        set ports {}
        foreach line [split [string range $text $i $j] \n] {
            if {[regexp {^\s*(input|output)\s.*?([A-Za-z_][A-Za-z0-9_]*)\s*,?\s*$} $line -> dir port]} {
                lappend ports $port
            }
        }
        return $ports
    }
    error "create_bd_cell: module $mod is not defined in any added source"
}
proc create_bd_cell {args} { _rec create_bd_cell {*}$args
    set name [lindex $args end]
    if {[_opt -type $args] eq "module"} {
        dict set ::cells $name [_module_ports [_opt -reference $args]]
    } else {
        if {[_opt -vlnv $args] eq ""} { error "create_bd_cell: IP without -vlnv" }
        dict set ::cells $name ip
    }
    return $name }
proc get_bd_cells {args} { _rec get_bd_cells {*}$args
    set c [lindex $args end]
    if {![dict exists $::cells $c]} { error "get_bd_cells: no cell $c" }
    return $c }
proc _pin {kind p} {
    set c [lindex [split $p /] 0]; set pin [lindex [split $p /] 1]
    if {![dict exists $::cells $c]} { error "$kind: no cell $c (pin $p)" }
    set ports [dict get $::cells $c]
    if {$ports ne "ip"} {
        if {$kind eq "get_bd_intf_pins"} {
            foreach s {tdata tvalid tready} {
                if {[lsearch -exact $ports ${pin}_$s] < 0} { error "$kind: $c has no AXI-Stream port ${pin}_$s" }
            }
        } elseif {[lsearch -exact $ports $pin] < 0} { error "$kind: $c has no port $pin" }
    }
    return $p }
proc get_bd_pins {args} { _rec get_bd_pins {*}$args; return [_pin get_bd_pins [lindex $args end]] }
proc get_bd_intf_pins {args} { _rec get_bd_intf_pins {*}$args; return [_pin get_bd_intf_pins [lindex $args end]] }
proc connect_bd_net {args} { _rec connect_bd_net {*}$args
    if {[llength $args] < 2} { error "connect_bd_net: needs two pins" } }
proc connect_bd_intf_net {args} { _rec connect_bd_intf_net {*}$args
    if {[llength $args] != 2} { error "connect_bd_intf_net: needs two interface pins" } }
proc apply_bd_automation {args} { _rec apply_bd_automation {*}$args
    if {[_opt -rule $args] eq ""} { error "apply_bd_automation: no -rule" } }
proc assign_bd_address {args} { _rec assign_bd_address {*}$args }
proc validate_bd_design {args} { _rec validate_bd_design {*}$args }
proc save_bd_design {args} { _rec save_bd_design {*}$args }
proc generate_target {args} { _rec generate_target {*}$args }
proc make_wrapper {args} { _rec make_wrapper {*}$args
    set w [file join $::proj_dir $::proj_name.gen sources_1 bd $::bd hdl ${::bd}_wrapper.v]
    file mkdir [file dirname $w]
    set fh [open $w w]; puts $fh "module ${::bd}_wrapper (); endmodule"; close $fh
    return $w }
proc launch_runs {args} { _rec launch_runs {*}$args
    # placeholders where Vivado writes its results, and the run logs of the scenario
    set runs [file join $::proj_dir $::proj_name.runs]
    foreach run [list synth_1 ${::bd}_accel_0_synth_1 impl_1] {
        file mkdir [file join $runs $run]
        set fh [open [file join $runs $run runme.log] w]
        puts $fh "INFO: \[Common 17-206\] stand-in log of $run"
        if {$run eq "${::bd}_accel_0_synth_1"} {
            puts $fh "INFO: \[Synth 8-3876\] \$readmem data file 'layer0_weights.mem' is read successfully"
            if {$::standin(readmem_warning) ne ""} { puts $fh $::standin(readmem_warning) }
        }
        close $fh
    }
    set impl [file join $runs impl_1]
    set fh [open [file join $impl ${::bd}_wrapper.bit] w]; puts $fh "stand-in bitstream"; close $fh
    set h [file join $::proj_dir $::proj_name.gen sources_1 bd $::bd hw_handoff]
    file mkdir $h
    set fh [open [file join $h $::bd.hwh] w]; puts $fh "stand-in hwh"; close $fh }
proc wait_on_run {args} { _rec wait_on_run {*}$args }
proc get_runs {args} { _rec get_runs {*}$args; return [lindex $args end] }
proc get_property {args} { _rec get_property {*}$args
    set prop [lindex $args 0]; set obj [lindex $args end]
    if {$prop eq "PROGRESS"} { return "100%" }
    if {[info exists ::props($obj,$prop)]} { return $::props($obj,$prop) }
    return "" }
proc _opt_flag {name argl} { return [expr {[lsearch -exact $argl $name] >= 0}] }
proc get_cells {args} { _rec get_cells {*}$args
    # block RAM cells: the scenario's count inside the accelerator, one RAMB36 in the DMA
    set n $::standin(bram18)
    set cells {}
    for {set i 0} {$i < $n / 2} {incr i} { lappend cells [list bnn_bd_i/accel/inst/mem36_$i RAMB36E1] }
    if {$n % 2} { lappend cells [list bnn_bd_i/accel/inst/mem18_0 RAMB18E1] }
    lappend cells [list bnn_bd_i/axi_dma_0/U0/fifo_reg RAMB36E1]
    set f [_opt -filter $args]
    if {![string match "*PRIMITIVE_GROUP == BMEM*" $f]} { error "get_cells: stand-in answers block RAM queries only" }
    set pat *
    regexp {NAME =~ "([^"]*)"} $f -> pat
    set out {}
    foreach c $cells {
        lassign $c name ref
        if {[string match $pat $name]} { lappend out $name; set ::props($name,REF_NAME) $ref }
    }
    return $out }
proc get_clocks {args} { _rec get_clocks {*}$args
    return [expr {$::standin(clocks) ? "clk_fpga_0" : ""}] }
proc get_timing_paths {args} { _rec get_timing_paths {*}$args
    set kind [expr {[_opt_flag -hold $args] ? "hold" : "setup"}]
    set p "path_$kind"
    set ::props($p,SLACK) $::standin(${kind}_slack)
    set ::props($p,STARTPOINT_PIN) $::standin(path_from)
    set ::props($p,ENDPOINT_PIN) $::standin(path_to)
    return $p }
proc open_run {args} { _rec open_run {*}$args }
proc _report {cmd args} { _rec $cmd {*}$args
    set f [_opt -file $args]
    if {$f eq ""} { error "$cmd: no -file" }
    set fh [open $f w]; puts $fh "stand-in $cmd"; close $fh }
proc report_utilization {args} { _report report_utilization {*}$args }
proc report_timing_summary {args} { _report report_timing_summary {*}$args }
proc exit {args} { error "script called exit $args" }
# keep the script's messages out of the caller's stdout (they name the temporary copy)
rename puts ::_real_puts
proc puts {args} {
    set a [expr {[lindex $args 0] eq "-nonewline" ? [lrange $args 1 end] : $args}]
    if {[llength $a] == 2 && [lindex $a 0] ni {stdout stderr}} { return [::_real_puts {*}$args] }
    _rec_msg [lindex $args end] }
proc _rec_msg {m} { lappend ::printed $m }
"""


def tcl_backend() -> str | None:
    """'tkinter' or 'tclsh' (whichever exists), else None."""
    try:
        import tkinter
        tkinter.Tcl()
        return "tkinter"
    except Exception:  # no _tkinter module or no Tcl library
        pass
    return "tclsh" if shutil.which("tclsh") else None


def _scenario_tcl(scenario: dict) -> str:
    lines = []
    for k, v in scenario.items():
        v = str(v)
        if not _SCENARIO_VALUE.match(v):
            raise BnnforgeError(f"stand-in scenario {k}: {v!r} has characters the stand-in does not quote")
        lines.append(f"set ::standin({k}) {{{v}}}")
    return "\n".join(lines) + "\n"


def _run_tkinter(script: Path, preamble: str) -> tuple[list[str], str | None]:
    import tkinter
    interp = tkinter.Tcl()
    interp.eval(STANDIN)
    interp.eval(preamble)
    err = None
    try:
        interp.eval(f"source {{{script}}}")
    except tkinter.TclError as e:
        err = f"{e} ({interp.eval('set ::errorInfo').splitlines()[-1].strip()})"
    rec = interp.eval("join [lmap r $::rec {lindex $r 0}] \\n").splitlines()
    return rec, err


def _run_tclsh(script: Path, preamble: str) -> tuple[list[str], str | None]:
    driver = script.parent / ".standin_driver.tcl"
    driver.write_text(STANDIN + preamble + f"""
if {{[catch {{source {{{script}}}}} msg]}} {{ _real_puts "ERROR $msg" }}
foreach r $::rec {{ _real_puts "CALL [lindex $r 0]" }}
""")
    p = subprocess.run(["tclsh", str(driver)], capture_output=True, text=True)
    driver.unlink()
    rec = [ln[5:] for ln in p.stdout.splitlines() if ln.startswith("CALL ")]
    errs = [ln[6:] for ln in p.stdout.splitlines() if ln.startswith("ERROR ")]
    if p.returncode != 0:
        errs.append(p.stderr.strip() or f"tclsh exited {p.returncode}")
    return rec, (errs[0] if errs else None)


def run_standin(project_dir: str | Path, backend: str | None = None, scenario: dict | None = None) -> dict:
    """Run project_dir/make_project.tcl against the stand-in on a temporary copy.

    scenario overrides DEFAULT_SCENARIO (bram18 None: the count in project.json, i.e. what
    the build expects). Returns {"backend", "calls", "commands", "error", "outputs",
    "check_failed", "sources_present", "messages"}: error is the Tcl error or None."""
    project_dir = Path(project_dir)
    if not (project_dir / "make_project.tcl").is_file():
        raise BnnforgeError(f"{project_dir / 'make_project.tcl'}: not found")
    backend = backend or tcl_backend()
    if backend is None:
        raise BnnforgeError("no Tcl interpreter: neither Python's tkinter nor tclsh is available")
    unknown = sorted(set(scenario or {}) - set(DEFAULT_SCENARIO))
    if unknown:
        raise BnnforgeError(f"stand-in scenario: unknown keys {unknown}")
    sc = dict(DEFAULT_SCENARIO, **(scenario or {}))
    if sc["bram18"] is None:
        pj = project_dir / "project.json"
        sc["bram18"] = int(json.loads(pj.read_text()).get("expected_bram18", 0)) if pj.is_file() else 0
    with tempfile.TemporaryDirectory(prefix="tclcheck-") as tmp:
        copy = Path(tmp) / "vivado"
        shutil.copytree(project_dir, copy, ignore=shutil.ignore_patterns("project", "output"))
        script = copy / "make_project.tcl"
        calls, err = (_run_tkinter if backend == "tkinter" else _run_tclsh)(script, _scenario_tcl(sc))
        out = copy / "output"
        outputs = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
        failed = (out / "check_failed.txt").read_text().strip() if (out / "check_failed.txt").is_file() else None
        added = sorted({p.relative_to(copy).as_posix() for p in (copy / "src").iterdir()})
    return {"backend": backend, "calls": len(calls), "commands": sorted(set(calls)), "error": err,
            "outputs": outputs, "check_failed": failed, "sources_present": added}


def check_project(project_dir: str | Path, backend: str | None = None, scenario: dict | None = None) -> dict:
    """Run project_dir/make_project.tcl against the stand-in (see run_standin); raise
    BnnforgeError with the Tcl error when the script fails."""
    project_dir = Path(project_dir)
    r = run_standin(project_dir, backend, scenario)
    if r["error"]:
        raise BnnforgeError(f"{project_dir / 'make_project.tcl'}: Tcl check failed: {r['error']}")
    unknown = sorted(set(r["commands"]) - set(VIVADO_COMMANDS))
    if unknown:  # cannot happen (an undefined command is a Tcl error), kept as a guard
        raise BnnforgeError(f"{project_dir / 'make_project.tcl'}: calls unknown commands {unknown}")
    return {k: r[k] for k in ("backend", "calls", "commands", "sources_present", "outputs")}
