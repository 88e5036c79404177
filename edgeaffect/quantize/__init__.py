"""Quantization and pruning: calibration data, INT8 per runtime, structured pruning, accuracy guard."""
