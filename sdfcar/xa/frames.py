"""Which frame of a cine run to reconstruct from.

Rule (automatic choice):

1. Every frame gets a vessel-contrast score (:func:`sdfcar.xa.vessels.contrast_score`, the
   mean of its strongest vesselness responses above the noise floor), which rises as the
   contrast agent washes in.
2. When the file marks R waves (an ECG trigger: Frame Numbers of Interest of type RWAVE,
   R Wave Pointer, or the per-frame cardiac trigger delays of Enhanced XA), the frames at
   the R waves are end-diastolic: the heart is at its most relaxed and the coronary
   arteries at their longest and slowest, which is the phase to pair between two views.
   The end-diastolic frame with the highest score is chosen, provided its score is at
   least :data:`END_DIASTOLE_MIN_CONTRAST` of the best frame's.
3. When every end-diastolic frame is poorly filled (a short run whose only R wave falls
   before the contrast arrives) but the cardiac phase of each frame is known (R-wave
   frames, frame times and the R-R interval: the median spacing of the R waves, or Heart
   Rate (0018,1088)), a well-filled frame (score at least
   :data:`END_DIASTOLE_MIN_CONTRAST` of the best) is chosen by phase: the coronary
   arteries move fastest in systole (the first ~40 % of the R-R interval, the tree
   shrinking towards end-systole) and least in diastasis and late diastole (from about
   :data:`DIASTOLE_PHASE` of the interval to the next R wave), which shows the
   end-diastolic tree. The best-scoring well-filled frame in that window is chosen; if
   there is none, the well-filled frame nearest an R wave in phase. The most-contrast
   frame may otherwise lie at end-systole, a few per cent smaller than the diastolic tree.
4. Otherwise (no ECG) the frame with the highest score is chosen.

``--frame N`` (1-based, as DICOM viewers number frames) overrides the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sdfcar.errors import bad_input
from sdfcar.xa.vessels import VesselParams, contrast_score

if TYPE_CHECKING:
    from sdfcar.xa.dicom import XARun

#: An end-diastolic frame is preferred when its contrast score reaches this fraction of
#: the best frame's.
END_DIASTOLE_MIN_CONTRAST = 0.8
#: Cardiac phase (fraction of the R-R interval after the R wave) where diastasis begins:
#: frames from here to the next R wave show the tree at rest, as at end-diastole.
DIASTOLE_PHASE = 0.6


@dataclass(frozen=True)
class FrameChoice:
    """The chosen frame (1-based), the rule that chose it and a one-line reason."""

    number: int
    rule: str  # "given", "single frame", "end-diastole", "diastole" or "most contrast"
    reason: str
    scores: tuple[float, ...] = ()
    end_diastolic: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping for reports."""
        return {"number": self.number, "rule": self.rule, "reason": self.reason,
                "scores": [round(s, 6) for s in self.scores],
                "end_diastolic_frames": list(self.end_diastolic)}


def frame_scores(run: XARun, params: VesselParams = VesselParams()) -> np.ndarray:
    """Vessel-contrast score of every frame of ``run``."""
    return np.array([contrast_score(run.attenuation(n), run.pixel_mm(n), params)
                     for n in range(1, run.number_of_frames + 1)])


def cardiac_phases(run: XARun) -> np.ndarray | None:
    """Each frame's cardiac phase in [0, 1), 0 at the R wave, from the R-wave frames, the
    frame times and the R-R interval (the median spacing of the R waves when there are two
    or more, else the Heart Rate tag); None when any of these is missing."""
    times, waves = run.frame_times_ms, run.r_wave_frames
    if times is None or not waves:
        return None
    r_times = times[np.asarray(waves) - 1]
    if len(waves) > 1:
        period = float(np.median(np.diff(r_times)))
    elif run.heart_rate_bpm:
        period = 60000.0 / run.heart_rate_bpm
    else:
        return None
    if not period > 0:
        return None
    return ((times - r_times[0]) / period) % 1.0


def diastolic_frame(scores: np.ndarray, phases: np.ndarray) -> tuple[int, str]:
    """Rule 3: the best-scoring well-filled frame (1-based) in diastole, else the
    well-filled frame nearest an R wave in phase; and which of the two it is."""
    filled = np.flatnonzero(scores >= END_DIASTOLE_MIN_CONTRAST * scores.max()) + 1
    resting = [n for n in filled if phases[n - 1] >= DIASTOLE_PHASE]
    if resting:
        return int(max(resting, key=lambda n: scores[n - 1])), "in diastole"
    distance = np.minimum(phases, 1.0 - phases)
    return int(min(filled, key=lambda n: (distance[n - 1], -scores[n - 1]))), \
        "nearest an R wave"


def choose_frame(run: XARun, number: int | None = None,
                 params: VesselParams = VesselParams()) -> FrameChoice:
    """The frame given by ``number`` (validated), or the automatic choice of the module doc."""
    count = run.number_of_frames
    if number is not None:
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) \
                or not 1 <= number <= count:
            raise bad_input(f"{run.path}: --frame",
                            f"expected a frame number from 1 to {count}, got {number!r}")
        return FrameChoice(int(number), "given", f"frame {number} of {count} as requested")
    if count == 1:
        return FrameChoice(1, "single frame", "the file has a single frame")
    scores = frame_scores(run, params)
    best = int(np.argmax(scores)) + 1
    ed = tuple(run.r_wave_frames)
    common = {"scores": tuple(float(s) for s in scores), "end_diastolic": ed}
    if ed:
        candidate = max(ed, key=lambda n: scores[n - 1])
        ratio = float(scores[candidate - 1] / max(scores[best - 1], 1e-12))
        if ratio >= END_DIASTOLE_MIN_CONTRAST:
            return FrameChoice(candidate, "end-diastole",
                               f"frame {candidate} of {count}: the end-diastolic (R-wave) frame "
                               f"with the most vessel contrast ({ratio:.0%} of the best frame's)",
                               **common)
        phases = cardiac_phases(run)
        if phases is not None:
            chosen, where = diastolic_frame(scores, phases)
            return FrameChoice(chosen, "diastole",
                               f"frame {chosen} of {count}: the well-filled frame {where} "
                               f"(cardiac phase {phases[chosen - 1]:.2f}); the end-diastolic "
                               f"frame {candidate} has only {ratio:.0%} of the best vessel "
                               "contrast", **common)
        return FrameChoice(best, "most contrast",
                           f"frame {best} of {count}: the most vessel contrast; the best "
                           f"end-diastolic frame ({candidate}) has only {ratio:.0%} of it",
                           **common)
    return FrameChoice(best, "most contrast", f"frame {best} of {count}: the most vessel "
                                              "contrast (no ECG/R-wave marks in the file)",
                       **common)
