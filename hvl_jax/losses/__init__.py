"""Objective of HVL: matching, Mask2Former criterion, semi-supervised terms, regularizers."""
