"""``edgeaffect serve``: one Triton Inference Server batching many camera streams onto one model.

``env`` says whether this interpreter can serve (PyTriton, and the libpython its stub links) and where the
serve env is; ``server`` binds our runtime into Triton.  The client side is ``edgeaffect.runtimes.triton``.
"""
