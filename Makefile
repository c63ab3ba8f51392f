# Two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; a plain "torch" requirement would pull a multi-GB CUDA build.
# GPU users: make TORCH="torch" demo (or install torch first, any version >= 2.1).
TORCH ?= torch==2.13.0
DEMO_OUT ?= demo-out

.PHONY: install demo test lint browser docs docs-check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[cpu,test]"
	touch $@

install: $(VENV)/.installed

# Text to image, then image to image (manifests/edits.csv: rows that start from manifests/images/).
demo: install
	$(BIN)/genbatch run manifests/example.csv --out $(DEMO_OUT)
	$(BIN)/genbatch report $(DEMO_OUT) --contact-sheet
	$(BIN)/genbatch run manifests/edits.csv --out $(DEMO_OUT)/edits
	@echo "Open $(DEMO_OUT)/report.html, or look at $(DEMO_OUT)/contact-sheet-001.png;"
	@echo "$(DEMO_OUT)/edits/report.html shows each edit beside the image it started from"

# Debian's chromium for the report's browser test (playwright drives it; it downloads nothing).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }

test: lint docs-check browser
	$(BIN)/python -m pytest

# Lint, format, types and the package layers (import-linter); their settings are in pyproject.toml.
lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy genbatch
	$(BIN)/lint-imports

# docs/cli.md from --help; docs/index.md is README.md with its links made relative to docs/.
docs: install
	$(BIN)/python docs/gen_cli.py
	sed 's#](docs/#](#g' README.md > docs/index.md

# The docs site (mkdocs.yml) must build with no warning (broken links, pages not in the nav), into a
# temporary folder, never the tree. No --quiet: mkdocs 1.6 then drops the warnings --strict counts.
docs-check: install
	@d=$$(mktemp -d); NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir "$$d"; rc=$$?; rm -rf "$$d"; exit $$rc

bench: install
	$(BIN)/python benchmarks/run_vs_diffusers.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
