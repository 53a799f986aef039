# The two commands a newcomer needs: `make demo` and `make test`. Each creates .venv and installs
# vidiff into it first. CPU installs pin torch with constraints/cpu.txt so that pip does not pull
# several GB of CUDA packages; on a GPU machine run `make install TORCH_CONSTRAINT=` (or install
# your own torch first and then `pip install -e .`).
PYTHON ?= python3
VENV ?= .venv
TORCH_CONSTRAINT ?= constraints/cpu.txt
PIP_FLAGS ?= -q --disable-pip-version-check
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml $(TORCH_CONSTRAINT)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) $(if $(TORCH_CONSTRAINT),-c $(TORCH_CONSTRAINT)) -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/vidiff demo

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
