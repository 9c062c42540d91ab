"""FMR ordering and the control factor u on hand-made cases."""
import numpy as np
import pytest

from pipeline.dataset.fmr import FMRParams, control_factors, fmr_order, key_points


def test_order_is_x_then_y_then_time():
    keys = np.array([[5, 1], [3, 9], [5, 0], [3, 9], [1, 4]], dtype=float)
    # x: 1 (t4) < 3 (t1, t3 tie on y -> time) < 5 (y 0 at t2 before y 1 at t0)
    assert fmr_order(keys).tolist() == [4, 1, 3, 2, 0]


def test_all_tied_keeps_temporal_order():
    assert fmr_order(np.zeros((7, 2))).tolist() == list(range(7))


def test_integer_rounding_creates_ties_resolved_by_time():
    lmk = np.zeros((3, 68, 2), dtype=np.float32)
    lmk[:, 36] = [[10.4, 5.0], [9.6, 5.0], [10.2, 4.6]]  # all round to x 10, y 5
    keys = key_points(lmk, FMRParams(rounding="round"))
    assert keys.tolist() == [[10, 5], [10, 5], [10, 5]]
    assert fmr_order(keys).tolist() == [0, 1, 2]
    keys = key_points(lmk, FMRParams(rounding="none"))
    assert fmr_order(keys).tolist() == [1, 2, 0]


def test_truncation_is_pythons_int():
    """The authors' key: int() of the source coordinate, toward zero (also for negative values,
    where a padded box lets the eye sit left of the frame)."""
    lmk = np.zeros((4, 68, 2), dtype=np.float32)
    lmk[:, 36] = [[10.9, 5.99], [10.0, 5.0], [-0.5, 3.2], [-1.5, 3.7]]
    keys = key_points(lmk, FMRParams())
    assert keys.tolist() == [[int(x), int(y)] for x, y in lmk[:, 36].tolist()] == [[10, 5], [10, 5], [0, 3], [-1, 3]]
    assert fmr_order(keys).tolist() == [3, 2, 0, 1]  # (0, 3) of frame 2 before the tie of frames 0 and 1


def test_fmr_params_defaults_and_names():
    p = FMRParams.from_params({})
    assert (p.keypoint, p.space, p.rounding, p.u_formula) == (36, "source", "truncate", "authors")
    assert FMRParams.from_params({"space": "crop", "rounding": "round"}) == FMRParams(space="crop", rounding="round")
    for bad in ({"space": "screen"}, {"rounding": "floor"}, {"integer": True}):
        with pytest.raises(ValueError):
            FMRParams.from_params(bad)


def test_keypoint_is_a_param():
    lmk = np.zeros((2, 68, 2), dtype=np.float32)
    lmk[:, 36, 0] = [2, 1]
    lmk[:, 45, 0] = [1, 2]
    assert fmr_order(key_points(lmk, FMRParams(keypoint=36))).tolist() == [1, 0]
    assert fmr_order(key_points(lmk, FMRParams(keypoint=45))).tolist() == [0, 1]


def test_u_formulas():
    assert control_factors(5).tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert control_factors(7)[3] == pytest.approx(0.5)  # the FMR middle frame is u = 0.5
    assert control_factors(4, "paper").tolist() == pytest.approx([0, 0.25, 0.5, 0.75])
    with pytest.raises(ValueError):
        FMRParams.from_params({"u_formula": "i/(N-1)"})
