# Two commands do all set-up on a fresh Debian machine with Python 3.11:
#   make demo   # venv + dependencies, then the main job on the bundled real CIFAR-10 subset
#   make test   # venv + dependencies (apt: OpenCV/libjpeg-turbo for ffcv), then the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test bench clean

$(BIN)/python:
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || \
		(apt-get update && apt-get install -y python3-venv python3-pip)
	$(PYTHON) -m venv $(VENV)

# ffcv (the FFCV loader backend) compiles against OpenCV and libjpeg-turbo, found by pkg-config.
$(VENV)/.installed: $(BIN)/python setup.py
	@pkg-config --exists opencv4 libturbojpeg 2>/dev/null || \
		(apt-get update && apt-get install -y libopencv-dev libturbojpeg0-dev pkg-config)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,loaders]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/fastccfs run demo --out runs/demo

test: setup
	$(BIN)/python -m pytest tests -q -rs --durations=15

# Loader throughput and conversion time (pytest-benchmark); the table goes to benchmarks/results.md.
bench: setup
	$(BIN)/python -m pytest benchmarks -q --benchmark-json=benchmarks/results.json
	$(BIN)/python benchmarks/table.py benchmarks/results.json benchmarks/figures/loaders.png > benchmarks/results.md
	cat benchmarks/results.md

clean:
	rm -rf $(VENV) build *.egg-info
