# Two commands do all the set-up (see README):
#   make run    install into .venv and run the main job
#   make test   install (with test tools) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SHARED ?= ../shared
OUT    ?= out

.PHONY: run demo test test-fast install install-dev bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the pinned CPU build first: a bare torch requirement would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

# the tests use the link extra too (aalink, GPL-3.0-or-later: tests/test_link.py runs two Link peers)
install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,link]'

# the main job: play a keyboard, Clara answers (through FluidSynth unless an output port is named)
run: install
	$(BIN)/clara live

# no keyboard needed: build the piano corpus, round-trip a performance and let Clara continue it
demo: install
	$(BIN)/clara corpus $(SHARED)/corpus/piano-midi-de -o $(OUT)/corpus
	$(BIN)/clara encode $(SHARED)/midi/maestro/maestro_1.mid -o $(OUT)/maestro_1.txt
	$(BIN)/clara decode $(OUT)/maestro_1.txt -o $(OUT)/maestro_1.decoded.mid
	$(BIN)/clara continue $(SHARED)/midi/maestro/maestro_1.mid -o $(OUT)/maestro_1.continued.mid --seconds 16 \
		--png $(OUT)/maestro_1.continued.png

# the Debian packages some tests use first (.ci/system-deps: installed as root or by sudo without a
# password, else one line with the command and how many tests will skip)
test: install-dev
	.ci/system-deps $(BIN)/python
	$(BIN)/lint-imports  # the layers (pyproject.toml: clara_live never imports training, music/ and codec/ below)
	$(BIN)/python -m pytest -n 2 -q

# the tests not marked slow (no JACK sessions, soaks, training runs or shipped-model checks): under a minute
test-fast: install-dev
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/encode_speed.py

lint: install-dev
	$(BIN)/ruff check clara_live training tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(OUT) .pytest_cache
