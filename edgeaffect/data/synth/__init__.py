"""Synthetic datasets written in the real layouts (rendered faces and bodies, voice-like audio)."""
