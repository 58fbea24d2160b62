"""sRGB <-> linear light, shared by the renderer (which composites in linear light) and the
simulated camera (which works in it)."""

from __future__ import annotations

import cv2
import numpy as np


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


# Lookup tables for the conversions on hot paths: 8- and 16-bit sRGB -> linear, and linear
# quantised to 16 bits (0.05 LSB of sRGB at worst) -> 8-bit sRGB.
_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float32) / 255)
_FROM_SRGB16 = srgb_to_linear(np.arange(65536, dtype=np.float64) / 65535)
_TO_SRGB8 = np.round(linear_to_srgb(np.arange(65536, dtype=np.float32) / 65535) * 255
                     ).astype(np.uint8)


def decode_srgb8(rgb: np.ndarray) -> np.ndarray:
    return cv2.LUT(rgb, _TO_LINEAR)


def decode_srgb16(rgb: np.ndarray) -> np.ndarray:
    return _FROM_SRGB16.take(rgb)


def encode_srgb8(linear: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
    """Linear RGB, first multiplied by `matrix` (3x3) if given -> 8-bit sRGB. The matrix and
    the scaling to the table's index are one cv2.transform (the ISP's linear part for free), and
    cv2's saturating conversion rounds and clips to the table's range in one pass."""
    to_index = (np.eye(3) if matrix is None else matrix) * np.float32(65535)
    index = cv2.add(cv2.transform(linear, to_index.astype(np.float32)), 0.0, dtype=cv2.CV_16U)
    return _TO_SRGB8.take(index)
