"""Lip sync: text to IPA phonemes (phonemizer front end) and phonemes to visemes (Oculus 15, Rhubarb A-X, ARKit).

Aligners and scoring live in sibling modules; this package's top level re-exports the mapping API.
"""

from .phonemize import phoneme_sequence, phonemize, strip_marks
from .visemes import (
    OCULUS_VISEMES,
    RHUBARB_SHAPES,
    ipa_table,
    ipa_to_oculus,
    ipa_to_oculus_sequence,
    ipa_to_rhubarb,
    oculus_to_arkit,
    oculus_to_rhubarb,
    phonemes_to_visemes,
    split_symbol,
    to_rhubarb,
)

__all__ = [
    "OCULUS_VISEMES",
    "RHUBARB_SHAPES",
    "ipa_table",
    "ipa_to_oculus",
    "ipa_to_oculus_sequence",
    "ipa_to_rhubarb",
    "oculus_to_arkit",
    "oculus_to_rhubarb",
    "phoneme_sequence",
    "phonemes_to_visemes",
    "phonemize",
    "split_symbol",
    "strip_marks",
    "to_rhubarb",
]
