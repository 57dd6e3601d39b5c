# phonescope: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PHONESCOPE := $(VENV)/bin/phonescope
STAMP  := $(VENV)/.installed
MINUTES ?= 50
# On a Jetson (L4T), JetPack's TensorRT and GStreamer-enabled OpenCV are system packages: the venv sees them.
VENV_FLAGS ?= $(if $(wildcard /etc/nv_tegra_release),--system-site-packages)

.PHONY: setup run test test-unit test-system bench engine train install clean rehearse

setup: $(STAMP)

$(STAMP): pyproject.toml
	bash deploy/dev-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,dev]'
	bash deploy/use-system-opencv.sh $(PY)
	touch $@

# The kiosk daemon on its embedded defaults: simulated camera, ONNX Runtime on the CPU,
# state in ./var, preview window if $$DISPLAY is set, else var/preview.jpg. Ctrl-C stops it;
# `.venv/bin/phonescope capture` in another terminal takes a capture.
run: setup
	$(PHONESCOPE) run

# tests/unit: in-process, fakes through the wiring, a fake clock (well under a minute);
# tests/system: real processes, sockets, X server, systemd tooling, training runs.
test: setup
	$(PY) -m pytest -q tests/unit tests/system

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-system: setup
	$(PY) -m pytest -q tests/system

BENCH_MINUTES ?= 10
bench: setup
	@mkdir -p .bench
	$(PHONESCOPE) bench --size 1920x1080 --repeat 3 --json .bench/inference.json
	$(PHONESCOPE) bench --pipeline --minutes $(BENCH_MINUTES) --json .bench/pipeline.json

# The FP16 TensorRT engine for this device (Jetson). Rebuilt only when what it depends on changed:
# `engine stamp` rewrites the stamp (ONNX sha256, [model] tile/batch, precision, TensorRT version,
# GPU name and compute capability) only when its content differs, so a new model, new engine
# settings or a JetPack upgrade rebuild, and nothing else does. Without TensorRT or a GPU it stops
# with one line. On an installed kiosk it builds into the service's engine folder for the kiosk's
# settings (/etc/phonescope/phonescope.toml); elsewhere beside the model (or $PHONESCOPE_ENGINE_DIR).
KIOSK_ENGINE_DIR := /var/cache/phonescope/engines
ENGINE_MODEL  ?= # empty: the model the config runs ([model] path, else the shipped model for [model] sample)
ENGINE_CONFIG ?= $(wildcard /etc/phonescope/phonescope.toml)
ENGINE_DIR    ?= $(or $(PHONESCOPE_ENGINE_DIR),$(wildcard $(KIOSK_ENGINE_DIR)))
ENGINE_FILE   ?= $(if $(ENGINE_DIR),$(ENGINE_DIR)/$(notdir $(basename $(ENGINE_MODEL))),$(basename $(ENGINE_MODEL))).engine
ENGINE_STAMP  ?= $(ENGINE_FILE).stamp
ENGINE_ARGS    = --model $(ENGINE_MODEL) $(if $(ENGINE_CONFIG),--config $(ENGINE_CONFIG))

engine: setup
ifeq ($(strip $(ENGINE_MODEL)),)
	@model=$$($(PY) -m edge.modelcard $(ENGINE_CONFIG)) && $(MAKE) --no-print-directory engine-of ENGINE_MODEL="$$model"
else
	@$(MAKE) --no-print-directory engine-of
endif

.PHONY: engine-of
engine-of:
	@$(PHONESCOPE) engine stamp $(ENGINE_STAMP) $(ENGINE_ARGS)
	@$(MAKE) --no-print-directory $(ENGINE_FILE).json

# The target is the metadata, written after the plan: a build that dies in between is rebuilt.
$(ENGINE_FILE).json: $(ENGINE_STAMP)
	$(PHONESCOPE) engine build --force --out $(ENGINE_FILE) $(ENGINE_ARGS)

# Long run of the daemon on the simulated camera (not part of `make test`): RSS, open fds, threads,
# frame and capture latency over time, and a verdict whether anything grows (exit 1 if it does).
SOAK_MINUTES ?= 30
SOAK_ARGS ?=
.PHONY: soak
soak: setup
	@mkdir -p .bench
	$(PY) -m edge.measure.soak --minutes $(SOAK_MINUTES) --json .bench/soak.json $(SOAK_ARGS)

# The appliance rehearsed (root; minutes): a Debian kiosk image (debootstrap, cached in .rehearse/cache until
# its recipe changes) booted under qemu with real systemd; phonescope installed from wheels by deploy/install.sh;
# scenarios install, capture_cli, hdmi_preview, sigterm, watchdog, no_camera_at_boot, reboot, upgrade and
# POWER_CUTS hard power cuts. Report: .rehearse/report.json. Exit 1 if a scenario failed.
POWER_CUTS ?= 20
rehearse: setup
	bash deploy/dev-deps.sh --rehearse
	$(PY) -m tests.rehearse --power-cuts $(POWER_CUTS)

# Retrain the shipped default model from the shared real images (MINUTES of CPU time).
train: setup
	$(PHONESCOPE) train --simulate ../shared/data/blood-smear ../shared/data/he-tissue \
		--out runs/default --minutes $(MINUTES) --variants 3
	$(PHONESCOPE) export runs/default/checkpoint.pt --out models/zoo/phonescope-default.onnx \
		--name phonescope-default

clean:
	rm -rf var .bench .pytest_cache build *.egg-info

# On the kiosk (root): the service, its user, config, udev rule.
install:
	bash deploy/install.sh
