"""Held (repeated) frames: which frames show the same picture as the one before (issue 23).

Much footage holds a picture for several frames: a 24 fps film in 30 fps video repeats one frame
in five, a 10-15 fps webcam stream re-encoded at 25-30 fps repeats irregularly, 2:2 and 3:2
pulldown repeat every picture. A fixed window of N such frames averages fewer than N pictures
(discrete ghosts, not blur); `blur.units: pictures` averages N distinct pictures instead.

The landmarks stage measures every consecutive pair of frames on its grey frame (downscaled to at
most `max_side` pixels, so the numbers mean the same at any resolution) as it decodes them
(`HoldMeter`): the mean absolute grey difference over the frame (`frame_diff`, 0-255 levels) and
the largest mean over an 8 x 8 grid of blocks (`block_diff`). A frame repeats the previous one
(`repeats`) when
- its difference is below `max_diff`: below what any moving picture of the sample clips shows; or
- it is below `max_relative_diff` and below `relative` x the largest difference of the `context`
  pairs on either side: a re-encoded copy differs by compression noise only, an order of magnitude
  less than the moving pictures around it, where a still moment of real footage differs from its
  neighbours by a few times at most;
and no block changed by `max_block_diff` or more (a change that large in one region is motion);
- or it sits on a held phase of a cadence found around it (`in_held_phase`): re-encoded held
  copies differ by an encoder's noise, which MPEG-2 or a keyframe makes as large as a real small
  change, so no threshold on one pair separates them; but a telecine or frame-rate conversion holds
  pictures in a pattern that repeats every P frames (2:2, 3:2, 2:1:1:1), and within `phase_window`
  pairs on either side (one shot) the block changes of its held phases all lie below those of
  its other phases. A phase set counts when one threshold puts at least `phase_agreement` of the
  pairs on each side of it and its median is at most 1/`phase_contrast` of the others' (the
  smallest period P <= `phase_max_period` that does, seen at least `phase_min_periods` times); a
  still moment of real footage has no such period, and the weaker periodic noise of a source's own
  group of pictures (I/P/B frames) stays below the contrast.

Calibration (`python benchmarks/holds.py`; frame_diff of every consecutive pair of the 20 sample
clips): the 16 repeat-free clips (GRID, the four talking clips, oval_office_address) never go
below 0.186 (relative: 0.169 x their neighbours); the held pairs of obama_weekly_address and
white_house_performance (the pairs below 0.5, whose nearest moving pair is 0.63 or more) reach
0.42. The defaults flag no pair of the repeat-free clips, even with both thresholds 25% higher,
and 97% / 93% of those held pairs. The cadence rule (`python benchmarks/holds.py --codecs`: held
copies of 20 repeat-free clips through five encoders): agreement 0.8 finds 98.8-100% of the held
pairs of mp4v, MJPEG, MPEG-2 and H.264 crf 18 copies (the pair rules alone: 60-99.6%) with no
false repeat on any original. Its margin: with agreement 0.7 three originals' own coding
pattern passes for a cadence, but their held phases' median is at most 1.9x below the others'
(true cadences: 3.6x and more through these codecs, 2.1x at H.264 crf 32), hence the contrast 2.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BLOCK_GRID = 8


@dataclass(frozen=True)
class HoldParams:
    max_diff: float = 0.12  # mean |grey difference| (0-255) below which a frame repeats the previous one
    relative: float = 0.08  # ...or below this x the largest difference of the nearby pairs
    max_relative_diff: float = 0.5  # (the relative test applies below this difference)
    context: int = 2  # pairs on either side for the relative test
    max_block_diff: float = 6.0  # a block of the 8 x 8 grid changing this much is motion: never a repeat
    max_side: int = 640  # measured on the grey frame downscaled to at most this side
    phase_window: int = 60  # pairs on either side searched for a cadence (0: the cadence rule is off)
    phase_agreement: float = 0.8  # share of pairs one threshold must put on the right side, each side
    phase_max_period: int = 6  # longest cadence period tried (3:2 and 2:1:1:1 are 5)
    phase_min_periods: int = 5  # a period must be seen at least this many times in the window
    phase_contrast: float = 2.0  # the held phases' median block change at most 1/this of the others'

    @classmethod
    def from_params(cls, p: dict | None) -> "HoldParams":
        p = p or {}
        return cls(**{k: type(getattr(cls, k))(p[k]) for k in cls.__dataclass_fields__ if k in p})


class HoldMeter:
    """Per frame, its difference to the previous frame: (frame_diff, block_diff); NaN for the first."""

    def __init__(self, p: HoldParams = HoldParams()):
        self.p = p
        self._prev: np.ndarray | None = None

    def step(self, gray: np.ndarray) -> tuple[float, float]:
        h, w = gray.shape
        scale = min(1.0, self.p.max_side / max(h, w))
        g = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        g = g.astype(np.float32)
        prev, self._prev = self._prev, g
        if prev is None or prev.shape != g.shape:
            return float("nan"), float("nan")
        d = cv2.absdiff(g, prev)
        bh, bw = max(1, d.shape[0] // BLOCK_GRID), max(1, d.shape[1] // BLOCK_GRID)
        blocks = cv2.resize(d[:bh * BLOCK_GRID, :bw * BLOCK_GRID], (BLOCK_GRID, BLOCK_GRID), interpolation=cv2.INTER_AREA)
        return float(d.mean()), float(blocks.max())


def repeats(frame_diff: np.ndarray, block_diff: np.ndarray, p: HoldParams = HoldParams(),
            cut: np.ndarray | None = None) -> np.ndarray:
    """Per frame: does it show the previous frame's picture (module doc)? Frame 0, a frame after a
    shot cut and a frame whose difference is unknown (NaN) never do. The whole video's arrays;
    the landmarks stage decides frame by frame (`pair_repeats`, `in_held_phase`) with the same result."""
    n = len(frame_diff)
    cut = np.zeros(n, bool) if cut is None else np.asarray(cut, bool)
    out = pair_repeats(frame_diff, block_diff, p, cut)
    for i in np.flatnonzero(~out):
        out[i] = in_held_phase(block_diff, cut, int(i), p, complete=True)
    return out


def pair_repeats(frame_diff: np.ndarray, block_diff: np.ndarray, p: HoldParams = HoldParams(),
                 cut: np.ndarray | None = None) -> np.ndarray:
    """The pair rules: the absolute, relative and block tests of each frame against its neighbours."""
    m = np.asarray(frame_diff, np.float64)
    n = len(m)
    known = np.isfinite(m)
    mm = np.where(known, m, 0.0)
    around = np.zeros(n)
    for k in range(1, p.context + 1):  # the largest difference among the pairs on either side
        around[k:] = np.maximum(around[k:], mm[:-k] if k < n else 0)
        around[:-k] = np.maximum(around[:-k], mm[k:] if k < n else 0)
    out = known & ((m < p.max_diff) | ((m < p.max_relative_diff) & (m < p.relative * around)))
    out &= ~(np.asarray(block_diff, np.float64) >= p.max_block_diff)
    if cut is not None:
        out &= ~np.asarray(cut, bool)
    if n:
        out[0] = False
    return out


def phase_window(i: int, block_diff, cut, p: HoldParams, complete: bool) -> tuple[int, int] | None:
    """The pairs [lo, hi) searched for frame i's cadence: `phase_window` on either side, inside
    i's shot (a cut frame starts one; its own pair belongs to none), shifted to keep its length at
    the shot's ends. None while the frames it needs are not all known (`complete`: they all are)."""
    half, n = p.phase_window, len(block_diff)
    start = i
    while start > max(0, i - 2 * half - 1) and not cut[start]:
        start -= 1
    start += 1  # the first pair after frame 0 or after the cut
    end = i + 1
    while end < min(n, i + 2 * half + 2) and not cut[end]:
        end += 1
    if end == n and not complete and end < max(start, i - half) + 2 * half + 1:
        return None  # the shot may go on past what is known: the window is not decided yet
    lo = max(start, min(i - half, end - 2 * half - 1))
    return lo, min(end, lo + 2 * half + 1)


def held_phases(log_block: np.ndarray, first: int, p: HoldParams) -> tuple[int, np.ndarray] | None:
    """The cadence of a run of log10 block changes whose first pair is frame `first`: the smallest
    period P and its held phases (frame index mod P) such that one threshold puts at least
    `phase_agreement` of the held phases' pairs below it and of the other phases' at or above it,
    and the held phases' median is at most 1/`phase_contrast` of the others'; None when no period
    does (module doc)."""
    idx = np.arange(first, first + len(log_block))
    for period in range(2, p.phase_max_period + 1):
        if len(log_block) < p.phase_min_periods * period:
            break
        phase = idx % period
        order = np.argsort([np.median(log_block[phase == k]) for k in range(period)])
        agreement = []
        for k in range(1, period):  # the k phases of lowest median held, the rest moving
            held = np.isin(phase, order[:k])
            low, high = np.sort(log_block[held]), np.sort(log_block[~held])
            t = np.concatenate([low, high])
            below = np.searchsorted(low, t, side="left") / len(low)
            above = 1 - np.searchsorted(high, t, side="left") / len(high)
            agreement.append(float(np.max(np.minimum(below, above))))
        k = int(np.argmax(agreement)) + 1  # the split that agrees best (3:2 holds three of five phases)
        held = np.isin(phase, order[:k])
        contrast = np.median(log_block[~held]) - np.median(log_block[held])
        if agreement[k - 1] >= p.phase_agreement and contrast >= np.log10(p.phase_contrast):
            return period, np.sort(order[:k])
    return None


def in_held_phase(block_diff, cut, i: int, p: HoldParams = HoldParams(), complete: bool = False) -> bool | None:
    """Does frame i sit on a held phase of the cadence around it (module doc)? None while its
    window is not decoded yet (streaming; `complete`: the arrays hold the whole video)."""
    if p.phase_window <= 0 or i == 0 or cut[i]:
        return False
    b = float(block_diff[i])
    if not np.isfinite(b) or b >= p.max_block_diff:
        return False
    window = phase_window(i, block_diff, cut, p, complete)
    if window is None:
        return None
    lo, hi = window
    values = np.asarray(block_diff[lo:hi], np.float64)
    if not np.isfinite(values).all() or hi - lo < 2 * p.phase_min_periods:
        return False
    found = held_phases(np.log10(np.maximum(values, 1e-3)), lo, p)
    return found is not None and i % found[0] in found[1]


def pictures(repeat: np.ndarray) -> np.ndarray:
    """Per frame, the index of the first frame of its hold (the picture it shows)."""
    idx = np.arange(len(repeat))
    starts = np.where(np.asarray(repeat, bool), 0, idx)
    return np.maximum.accumulate(starts) if len(starts) else starts


def cadence(repeat: np.ndarray) -> dict:
    """Per video: the share of consecutive pairs that repeat, the mean hold (frames per picture),
    and the cadence: `none` (no repeats), `k:k` (every picture held k frames), `3:2` (holds of 3
    and 2 alternating: 3:2 pulldown), `a:b:c...` (a hold pattern that recurs, e.g. `2:1:1:1` for
    24 fps in 30 fps, written from its longest hold), or `irregular`. The first and last holds may be cut by the clip's ends and
    are not used for the pattern."""
    r = np.asarray(repeat, bool)
    n = len(r)
    share = float(r[1:].mean()) if n > 1 else 0.0
    starts = np.flatnonzero(~r)
    holds = np.diff(np.r_[starts, n]) if len(starts) else np.array([n])
    out = {"repeat_share": round(share, 4), "mean_hold": round(float(holds.mean()), 4) if len(holds) else 0.0,
           "pictures": int(len(starts))}
    inner = holds[1:-1]
    if not r[1:].any():
        out["cadence"] = "none"
    elif len(inner) >= 4:
        out["cadence"] = _pattern(inner)
    else:
        out["cadence"] = "irregular"
    return out


def repeat_free_videos(landmarks_report: str | Path) -> set[str]:
    """The videos the landmarks stage's report (data/landmarks/report.json) found without held
    frames (cadence `none`); none when the report is missing or older than hold detection."""
    path = Path(landmarks_report)
    videos = json.loads(path.read_text()).get("videos", {}) if path.is_file() else {}
    return {v for v, r in videos.items() if (r.get("holds") or {}).get("cadence") == "none"}


def _pattern(holds: np.ndarray, max_period: int = 6, agreement: float = 0.8) -> str:
    """The shortest hold pattern (as a cycle: `2:1:1:1` and `1:2:1:1` are one) that at least
    `agreement` of the sequence's windows of its length follow, so a phase shift at a shot cut
    does not hide it; else `irregular`."""
    holds = [int(v) for v in holds]
    for period in range(1, max_period + 1):
        windows = [tuple(holds[k:k + period]) for k in range(len(holds) - period + 1)]
        if len(windows) < 2 * period:
            break
        counts: dict[tuple, int] = {}
        for w in windows:
            key = max(w[j:] + w[:j] for j in range(period))  # one rotation per cycle: the largest
            counts[key] = counts.get(key, 0) + 1
        best = max(counts, key=lambda k: (counts[k], k))
        if counts[best] >= agreement * len(windows) and max(best) > 1:
            return f"{best[0]}:{best[0]}" if period == 1 else ":".join(map(str, best))
    return "irregular"


UNITS = ("frames", "pictures")  # blur.units


def units_param(blur: dict, default: str) -> str:
    """blur.units (or `default`), checked: the fixed and VLA builders read it alike."""
    units = str(blur.get("units", default))
    if units not in UNITS:
        raise ValueError(f"blur.units must be one of {UNITS}, got {units!r}")
    return units


def picture_view(lm: dict) -> tuple[dict, np.ndarray]:
    """One face track's landmarks (read_tracks) seen one frame per picture (`blur.units: pictures`):
    every per-frame array taken at the first frame of each hold, and those frames' indices.

    `frame_number` becomes a picture count that skips a number where the source numbering has a
    gap, so the window builders' "no gap" rule (consecutive numbers) holds per picture; `cut` is
    the first frame's (a cut frame never repeats the one before it). Windows built on the view
    name source frames through the returned indices. On footage without repeats the view is the
    landmarks themselves."""
    n = len(lm["has_face"])
    picture = np.asarray(lm.get("picture", np.arange(n)))
    frames = np.flatnonzero(picture == np.arange(n))
    if len(frames) == n:
        return lm, frames
    view = {k: (v[frames] if isinstance(v, np.ndarray) and len(v) == n else v) for k, v in lm.items()}
    number = np.asarray(lm["frame_number"], np.int64)
    whole = np.r_[True, (np.diff(number[frames]) == np.diff(frames))]  # no gap inside the hold before
    view["frame_number"] = np.cumsum(np.where(whole, 1, 2)).astype(np.int32)
    return view, frames


def distinct_pictures(lm: dict, frames) -> int:
    """How many distinct pictures the frames show (the `pictures` column of a sample)."""
    picture = lm.get("picture")
    return len(frames) if picture is None else len({int(picture[f]) for f in frames})
