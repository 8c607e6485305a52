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

# The end-to-end chains (tests/e2e: real train.py/evaluate.py processes; the pytest running them
# mostly waits) run in a second pytest beside the rest, on the core the in-process tests leave
# idle; their report is printed after the main one and both must pass.
# The second pytest gets its own process group (setsid), so that an interrupted `make test` stops
# the processes its chains started too.
test: $(STAMP)
	@log=$$(mktemp); setsid -w $(PY) -m pytest -q -p no:cacheprovider --durations=0 tests/e2e > $$log 2>&1 & e2e=$$!; \
	trap 'kill -- -$$e2e 2>/dev/null' INT TERM; \
	$(PY) -m pytest -q -m "not e2e" --durations=20; main=$$?; \
	wait $$e2e; chains=$$?; \
	echo; echo "=== tests/e2e (end-to-end chains, run beside the tests above) ==="; cat $$log; rm -f $$log; \
	test $$main -eq 0 && test $$chains -eq 0

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[torch]'
	$(PY) bench/input_pipeline.py
	$(PY) bench/input_seasons.py
	$(PY) bench/input_steps.py
	$(PY) bench/train_step.py
	$(PY) bench/end_to_end.py
	$(PY) bench/build.py
	$(PY) bench/memory.py
	$(PY) bench/predict.py
	$(PY) bench/cpu_settings.py
	$(PY) bench/optimizer_apply.py
	# PyTorch on jemalloc (apt-get install libjemalloc2); skipped with a message where it is missing
	-$(PY) bench/train_step.py --torch-allocator jemalloc --cases simclr_resnet18 moco_resnet50 simclr_resnet18_b200 moco_resnet50_b64
	-$(PY) bench/end_to_end.py --torch-allocator jemalloc

clean:
	rm -rf $(VENV) data
