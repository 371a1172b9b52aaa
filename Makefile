# Two commands set everything up on a fresh machine (see README.md):
#   make demo   - install into .venv, then run the demo on the embedded simulated dataset
#   make test   - install into .venv with the test extras, then lint, validate and run the tests
VENV ?= .venv
DEMO_OUT ?= brainrecon-demo

.PHONY: demo test install clean

# setuptools tells every editable install of this layout (nipype_brainrecon.workflows = workflows/)
# "Editable installation. Please be careful with folders ..." as a 10-line BuildBackendWarning
# block; PYTHONWARNINGS drops exactly that notice (its message), every other warning still shows.
install:
	@PYTHONWARNINGS="ignore:Editable installation$${PYTHONWARNINGS:+,$$PYTHONWARNINGS}" \
		bash tools/setup_venv.sh "$(VENV)"

demo: install
	@bash tools/demo.sh "$(VENV)" "$(DEMO_OUT)"

test: install
	@bash tools/test.sh "$(VENV)"

clean:
	rm -rf "$(VENV)" "$(DEMO_OUT)" .pytest_cache .ruff_cache
