# Two commands set everything up on a fresh machine (see README.md):
#   make demo   - install into .venv, then run the demo on the embedded simulated dataset
#   make test   - install into .venv with the test extras, then lint, validate and run the tests
VENV ?= .venv
DEMO_OUT ?= brainrecon-demo

.PHONY: demo test install clean

install:
	@bash tools/setup_venv.sh "$(VENV)"

demo: install
	@bash tools/demo.sh "$(VENV)" "$(DEMO_OUT)"

test: install
	@bash tools/test.sh "$(VENV)"

clean:
	rm -rf "$(VENV)" "$(DEMO_OUT)" .pytest_cache .ruff_cache
