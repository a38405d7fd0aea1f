"""
Regenerate the synthetic voice-note clips of the AI evaluation set from clips.jsonl.

    .venv/bin/python bench/ai_eval/make_clips.py [--rate 16000] [--only clip-en-01 ...]

Needs espeak-ng on the PATH (Debian/Ubuntu: `apt-get install espeak-ng`). For each line of
bench/ai_eval/clips.jsonl it speaks `text` with the espeak-ng voice for the line's language at 150 words
per minute, which espeak-ng writes as 16-bit mono WAV at 22050 Hz, cuts the silence at both ends down to
0.15 s, resamples it to --rate Hz (16000 by default, what speech-recognition models expect; 0 keeps
espeak-ng's own rate) and writes it to the line's `file`, relative to bench/ai_eval/. Standard library
only: the resampler below is a windowed-sinc polyphase filter, so no audio package is needed.

The output depends on the espeak-ng version (the clips in the repository were made with 1.51), so a
rerun may change the bytes of the files but not what they say.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "clips.jsonl"
VOICES = {"en": "en-us", "es": "es", "pt": "pt-br", "de": "de", "fr": "fr-fr"}
WORDS_PER_MINUTE = 150


def resample(samples: list[int], src_rate: int, dst_rate: int, half_width: int = 16) -> list[int]:
    """Resample 16-bit samples from src_rate to dst_rate with a Blackman-windowed sinc filter.

    The filter's cutoff is 90% of the lower of the two Nyquist frequencies, so downsampling does not alias.
    """
    if src_rate == dst_rate:
        return list(samples)
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    cutoff = 0.9 * min(1.0, up / down)  # as a fraction of the input's Nyquist frequency
    taps = range(-half_width + 1, half_width + 1)
    table = []
    for phase in range(up):
        frac = phase / up
        weights = []
        for k in taps:
            t = k - frac
            sinc = 1.0 if t == 0 else math.sin(math.pi * cutoff * t) / (math.pi * cutoff * t)
            x = (t + half_width) / (2 * half_width)  # 0..1 across the window
            window = 0.42 - 0.5 * math.cos(2 * math.pi * x) + 0.08 * math.cos(4 * math.pi * x)
            weights.append(sinc * window)
        total = sum(weights)
        table.append([w / total for w in weights])
    padded = [0] * half_width + list(samples) + [0] * half_width
    out = []
    n_out = len(samples) * up // down
    for n in range(n_out):
        i0, phase = divmod(n * down, up)
        start = i0 + 1  # padded index of sample i0 - half_width + 1
        window_samples = padded[start : start + 2 * half_width]
        value = round(sum(w * s for w, s in zip(table[phase], window_samples, strict=False)))
        out.append(max(-32768, min(32767, value)))
    return out


def trim_silence(samples: list[int], rate: int, keep: float = 0.15, threshold: int = 200) -> list[int]:
    """Cut leading and trailing samples quieter than threshold, keeping `keep` seconds of each margin."""
    loud = [i for i, s in enumerate(samples) if abs(s) > threshold]
    if not loud:
        return list(samples)
    margin = round(keep * rate)
    return list(samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin])


def read_wav(path: Path) -> tuple[list[int], int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SystemExit(f"{path}: expected 16-bit mono, got {w.getsampwidth() * 8}-bit x{w.getnchannels()}")
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    samples = [int.from_bytes(raw[i : i + 2], "little", signed=True) for i in range(0, len(raw), 2)]
    return samples, rate


def write_wav(path: Path, samples: list[int], rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)


def make_clip(espeak: str, clip: dict, rate: int) -> float:
    """Speak one manifest line into its file; returns the clip's duration in seconds."""
    voice = VOICES[clip["language"]]
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "raw.wav"
        subprocess.run(
            [espeak, "-v", voice, "-s", str(WORDS_PER_MINUTE), "-w", str(raw_path), clip["text"]],
            check=True,
            capture_output=True,
        )
        samples, src_rate = read_wav(raw_path)
    dst_rate = rate or src_rate
    samples = resample(trim_silence(samples, src_rate), src_rate, dst_rate)
    write_wav(HERE / clip["file"], samples, dst_rate)
    return len(samples) / dst_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rate", type=int, default=16000, help="output sample rate in Hz; 0 keeps espeak-ng's")
    parser.add_argument("--only", nargs="*", default=None, help="clip ids to remake (default: all)")
    args = parser.parse_args(argv)

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print("espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 1
    clips = [json.loads(line) for line in MANIFEST.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.only:
        clips = [c for c in clips if c["id"] in set(args.only)]
    total_bytes = 0
    for clip in clips:
        seconds = make_clip(espeak, clip, args.rate)
        size = (HERE / clip["file"]).stat().st_size
        total_bytes += size
        print(f"{clip['id']}  {seconds:4.1f} s  {size / 1024:6.1f} KiB  {clip['text']}")
    print(f"{len(clips)} clips, {total_bytes / 1024 / 1024:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
