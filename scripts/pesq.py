#!/usr/bin/env python3
"""PESQ wideband (ITU-T P.862.2, MOS-LQO) of a degraded recording against its reference.

usage: scripts/pesq.py REF.wav DEG.wav [FROM:TO ...]
       scripts/pesq.py --check      (exit 0 when numpy and pesq can be imported)

Both files: mono 16-bit WAV at 16 kHz. The degraded file is lined up with the reference first:
shifted by the lag that maximises their cross-correlation (computed with an FFT), so that a
listener's recording that starts late or early, or carries a codec's look-ahead, is scored on the
same stretch of speech; missing samples count as silence.

Without FROM:TO, the whole reference is scored. With them (seconds in the reference), each
stretch is scored on its own, the degraded one lined up again within 0.3 s (MARGIN) of the whole
file's lag (a jitter buffer may change its delay between one stretch and the next). Leave some
silence on both sides of the speech in each stretch: PESQ wants it. PESQ then does its own finer
alignment, utterance by utterance.

Prints one score a line on stdout (one per stretch, in order); how each was lined up on stderr.

Needs numpy and the `pesq` module (`python3 -m pip install --user pesq`).

Exit codes: 0 scored (or, with --check, the modules are there); 1 bad input or PESQ failed;
2 usage; 3 numpy or pesq is missing.
"""

import os
import sys
import wave

RATE = 16_000
# How far a stretch may have moved from the whole file's lag, in seconds.
MARGIN = 0.3


def read(path):
    """The samples of a 16 kHz mono 16-bit WAV file, as float64."""
    import numpy as np

    with wave.open(path, "rb") as f:
        if f.getnchannels() != 1 or f.getframerate() != RATE:
            raise ValueError(
                f"{path}: {f.getnchannels()} channel(s) at {f.getframerate()} Hz, "
                f"need mono at {RATE} Hz"
            )
        width = f.getsampwidth()
        frames = f.readframes(f.getnframes())
    if width == 2:
        return np.frombuffer(frames, dtype="<i2").astype(np.float64)
    raise ValueError(f"{path}: {8 * width}-bit samples, need 16-bit")


def window(deg, start, n):
    """`deg[start:start + n]`, with silence where that runs past either end."""
    import numpy as np

    out = np.zeros(n)
    lo, hi = max(start, 0), min(start + n, len(deg))
    if lo < hi:
        out[lo - start : hi - start] = deg[lo:hi]
    return out


def best_lag(ref, deg, lags):
    """The lag in `lags` (deg[i + lag] pairs with ref[i]) with the largest cross-correlation."""
    import numpy as np

    size = 1 << (len(ref) + len(deg) - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(deg, size) * np.conj(np.fft.rfft(ref, size)), size)
    # corr[k] is the lag k, corr[size - k] the lag -k.
    lags = np.arange(lags.start, lags.stop)
    return int(lags[np.argmax(corr[lags % size])])


def similarity(a, b):
    import numpy as np

    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def stretches(args, ref):
    """(from, to) sample ranges of the reference from FROM:TO arguments, or the whole of it."""
    if not args:
        return [(0, len(ref))]
    out = []
    for arg in args:
        start, _, end = arg.partition(":")
        a, b = round(float(start) * RATE), round(float(end) * RATE)
        if not 0 <= a < b <= len(ref):
            raise ValueError(f"{arg}: not a stretch of the reference (0:{len(ref) / RATE:.3f})")
        out.append((a, b))
    return out


def main(argv):
    check = len(argv) == 2 and argv[1] == "--check"
    if not check and len(argv) < 3:
        print("\n".join(__doc__.strip().splitlines()[2:4]), file=sys.stderr)
        return 2
    # This file is called pesq.py too: its own directory (first on the path) would shadow the
    # module.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        import numpy  # noqa: F401
        from pesq import pesq
    except ImportError as err:
        print(
            f"pesq.py: {err}; install with: python3 -m pip install --user pesq",
            file=sys.stderr,
        )
        return 3
    if check:
        return 0
    try:
        ref, deg = read(argv[1]), read(argv[2])
        parts = stretches(argv[3:], ref)
    except (OSError, EOFError, ValueError, wave.Error) as err:
        print(f"pesq.py: {err}", file=sys.stderr)
        return 1
    whole = best_lag(ref, deg, range(-len(ref) + 1, len(deg)))
    margin = round(MARGIN * RATE)
    for a, b in parts:
        part = ref[a:b]
        around = window(deg, a + whole - margin, b - a + 2 * margin)
        lag = best_lag(part, around, range(0, 2 * margin + 1))
        aligned = around[lag : lag + b - a]
        try:
            score = pesq(RATE, part, aligned, "wb")
        except Exception as err:  # the module raises its own error types, and ValueError
            print(f"pesq.py: {a / RATE:.2f}-{b / RATE:.2f} s: PESQ failed: {err}", file=sys.stderr)
            return 1
        print(
            f"pesq.py: {a / RATE:.2f}-{b / RATE:.2f} s: shifted by "
            f"{1000 * (whole - margin + lag) / RATE:+.1f} ms "
            f"(correlation {similarity(part, aligned):.3f})",
            file=sys.stderr,
        )
        print(f"{score:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
