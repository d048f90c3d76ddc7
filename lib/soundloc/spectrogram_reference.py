"""Plain numpy/scipy reference of the paper's spectrogram (SPEC section 4), for tests and the benchmark.

Written independently of :mod:`soundloc.spectrogram` (which is the fast, batched torch version):
scipy ``stft`` with the exact arguments, and a mel matrix that follows
``tf.signal.linear_to_mel_weight_matrix`` line by line. Everything is float64.
"""
from __future__ import annotations

import numpy as np
import scipy.signal

# tf.signal's mel constants: mel = 1127 * ln(1 + f / 700)  (== 2595 * log10(1 + f / 700), HTK)
_MEL_BREAK_FREQUENCY_HERTZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0


def _hertz_to_mel(frequencies_hertz):
    """Hz -> HTK mel, as tf.signal.mel_ops._hertz_to_mel."""
    return _MEL_HIGH_FREQUENCY_Q * np.log(1.0 + (np.asarray(frequencies_hertz, dtype=np.float64)
                                                 / _MEL_BREAK_FREQUENCY_HERTZ))


def reference_mel_matrix(num_mel_bins: int = 128, num_spectrogram_bins: int = 513, sample_rate: float = 22050,
                         lower_edge_hertz: float = 0.0, upper_edge_hertz: float = 11025.0) -> np.ndarray:
    """tf.signal.linear_to_mel_weight_matrix in numpy -> (num_spectrogram_bins, num_mel_bins) float64."""
    bands_to_zero = 1  # the DC bin gets zero weight
    nyquist_hertz = sample_rate / 2.0
    linear_frequencies = np.linspace(0.0, nyquist_hertz, num_spectrogram_bins)[bands_to_zero:]
    spectrogram_bins_mel = _hertz_to_mel(linear_frequencies)[:, np.newaxis]
    band_edges_mel = np.linspace(_hertz_to_mel(lower_edge_hertz), _hertz_to_mel(upper_edge_hertz), num_mel_bins + 2)
    # tf.signal.frame(band_edges_mel, frame_length=3, frame_step=1) -> (num_mel_bins, 3)
    framed = np.stack([band_edges_mel[i:i + 3] for i in range(num_mel_bins)])
    lower_edge_mel = framed[:, 0].reshape(1, num_mel_bins)
    center_mel = framed[:, 1].reshape(1, num_mel_bins)
    upper_edge_mel = framed[:, 2].reshape(1, num_mel_bins)
    lower_slopes = (spectrogram_bins_mel - lower_edge_mel) / (center_mel - lower_edge_mel)
    upper_slopes = (upper_edge_mel - spectrogram_bins_mel) / (upper_edge_mel - center_mel)
    mel_weights_matrix = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    return np.pad(mel_weights_matrix, [[bands_to_zero, 0], [0, 0]])


def reference_stft_magnitude(wave: np.ndarray, sr: int = 22050) -> np.ndarray:
    """(T,) waveform -> (513, F) float64 magnitude: |scipy stft| x 2 (scipy already divides by window sum)."""
    _, _, zxx = scipy.signal.stft(np.asarray(wave, dtype=np.float64), fs=sr, window="hann", nperseg=512,
                                  noverlap=384, nfft=1024, detrend=False, return_onesided=True,
                                  boundary=None, padded=False, axis=-1, scaling="spectrum")
    return np.abs(zxx) * 2.0


def db_to_uint8(db: np.ndarray) -> np.ndarray:
    """dB in [-100, 0] -> uint8 by numpy's cast (truncation): ((dB + 100) * 255 / 100).astype(uint8)."""
    return ((db + 100.0) * 255.0 / 100.0).astype(np.uint8)


def reference_spectrogram(wave: np.ndarray, sr: int = 22050, fmin: float = 0.0, fmax: float = 11025.0,
                          n_mels: int = 128) -> np.ndarray:
    """(T,) float waveform at 22.05 kHz -> (128, F) uint8 image, F = 1 + (T - 512) // 128, high frequencies first."""
    mag = reference_stft_magnitude(wave, sr)                                   # (513, F)
    mel = reference_mel_matrix(n_mels, mag.shape[0], sr, fmin, fmax).T @ mag   # (128, F)
    db = np.clip(20.0 * np.log10(np.maximum(1e-10, mel)), -100.0, 0.0)
    return db_to_uint8(db)[::-1].copy()
