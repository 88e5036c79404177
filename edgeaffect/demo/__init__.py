"""On-device demo: sources, face detection and tracking, buffers, overlay, sinks."""
