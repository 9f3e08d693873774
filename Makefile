# Two entry points for a newcomer: `make demo` (the main job end to end) and
# `make test`. Both create/refresh .venv and install everything they need,
# idempotently (the install is redone only when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
JOBS   ?= 2
VENV_FLAGS ?=

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "error: python3-venv is missing; run: sudo apt-get install python3-venv" >&2; exit 1; fi; }
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	@# a Tcl interpreter for the offline check of the generated Vivado script (tests skip without one)
	@command -v tclsh >/dev/null || $(PYTHON) -c 'import tkinter; tkinter.Tcl()' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq tcl; \
	  else echo "note: no Tcl (tclsh or Python tkinter); the Vivado-script check will be skipped (sudo apt-get install tcl)" >&2; fi; }
	@# headless Chromium for the check that the HTML build report renders (the test skips without one)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "note: no Chromium; the HTML report rendering check will be skipped (sudo apt-get install chromium)" >&2; fi; }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[all,dev]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/bnnforge demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(JOBS) tests

clean:
	rm -rf runs build
