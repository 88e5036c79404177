"""Inference runtimes behind one interface: ONNX Runtime, OpenVINO, TensorRT, torch."""
