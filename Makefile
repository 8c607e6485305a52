# Two commands do the whole set-up on a fresh machine: `make quickstart` and `make test`.
# Both create (or reuse) the virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
WORLD ?= data/synthetic
TFDS_DIR ?= data/tfds

.PHONY: quickstart test bench install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(PY) -m sslrs_tf.quickstart

test: $(STAMP)
	$(PY) -m pytest -q --durations=20

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[torch]'
	$(PY) bench/input_pipeline.py
	$(PY) bench/input_steps.py
	$(PY) bench/train_step.py
	$(PY) bench/end_to_end.py
	$(PY) bench/memory.py
	$(PY) bench/cpu_settings.py
	$(PY) bench/optimizer_apply.py
	# PyTorch on jemalloc (apt-get install libjemalloc2); skipped with a message where it is missing
	-$(PY) bench/train_step.py --torch-allocator jemalloc --cases simclr_resnet18 moco_resnet50 simclr_resnet18_b200 moco_resnet50_b64
	-$(PY) bench/end_to_end.py --torch-allocator jemalloc

clean:
	rm -rf $(VENV) data
