"""Training (needs torch): the trainer loop, semi-supervised training, and one recipe per task (``recipe.py``).

Datasets and metrics live in the torch-free :mod:`edgeaffect.tasks`.
"""
