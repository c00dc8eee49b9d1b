"""The drift law's fits (rtransfer.drift_law) against numpy's least squares, and its verdicts on points built to
have a known answer: a measure that drives the loss is found and told apart from noise, a measure whose drift
comes with gains predicts no forgetting, too few points fit nothing."""

import numpy as np
import pytest

from rtransfer.drift_law import MEASURES, MIN_POINTS, fit_law
from rtransfer.report.drift_law import law_sentence


def made_points(n: int = 30, seed: int = 0) -> list[dict]:
    """forward_kl drives Δother (−10 points per unit, small noise); latent_d is forward_kl plus noise twice its
    spread; reverse_kl is unrelated; weights_changed is a constant plus unrelated noise; Δnon rises with
    forward_kl (a gain, not a loss)."""
    rng = np.random.default_rng(seed)
    drift = rng.uniform(0, 1, n)
    return [
        {
            "model": f"arm{i % 3}",
            "step": i,
            "forward_kl": float(x),
            "reverse_kl": float(rng.uniform(0, 1)),
            "latent_d": float(x + rng.normal(0, 0.6)),
            "weights_changed": float(0.5 + rng.normal(0, 0.1)),
            "Δother": float(-10 * x + rng.normal(0, 0.5)),
            "Δnon": float(5 * x + rng.normal(0, 0.5)),
        }
        for i, x in enumerate(drift)
    ]


def test_each_fit_is_numpys_least_squares_line():
    points = made_points()
    law = fit_law(points, replicates=500, seed=0, confidence=0.95)
    for q in ("Δother", "Δnon"):
        y = np.array([p[q] for p in points])
        for m in MEASURES:
            x = np.array([p[m] for p in points])
            slope, intercept = np.polyfit(x, y, 1)
            fit = law["fits"][q][m]
            assert fit["slope"] == pytest.approx(slope, abs=1e-9) and fit["intercept"] == pytest.approx(intercept)
            assert fit["r2"] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, abs=1e-12)
            assert fit["n"] == len(points) and fit["r2_ci"][0] <= fit["r2_ci"][1]
            assert fit["slope_ci"][0] <= fit["slope"] <= fit["slope_ci"][1]


def test_the_measure_that_drives_the_loss_is_found_and_told_apart():
    law = fit_law(made_points(), replicates=500, seed=0, confidence=0.95)
    other = law["verdicts"]["Δother"]
    assert other["best"] == "forward_kl" and "forward_kl" in other["predicting"]
    assert other["not_apart"] == [] and all(gap[0] > 0 for gap in other["gaps"].values())
    assert "reverse_kl" not in other["predicting"]  # unrelated to the loss
    sentence = law_sentence("Δother", law["fits"]["Δother"], other)
    assert sentence.startswith("Forward KL on the training prompts predicts the change in other reasoning best")
    assert "ahead of every other measure" in sentence


def test_drift_that_comes_with_a_gain_predicts_no_forgetting():
    law = fit_law(made_points(), replicates=500, seed=0, confidence=0.95)
    non = law["verdicts"]["Δnon"]
    assert law["fits"]["Δnon"]["forward_kl"]["slope_ci"][0] > 0  # a clear line, the other way
    assert non["best"] is None and "forward_kl" not in non["predicting"]
    assert law_sentence("Δnon", law["fits"]["Δnon"], non).startswith("No drift measure predicts")


def test_too_few_points_or_a_missing_measure_fit_nothing_of_it():
    points = made_points(n=MIN_POINTS - 1)
    law = fit_law(points, replicates=100, seed=0, confidence=0.95)
    assert all(f["r2"] is None and "a fit needs" in f["note"] for f in law["fits"]["Δother"].values())
    assert law["verdicts"]["Δother"]["fitted"] == [] and "can be fitted" in law_sentence(
        "Δother", law["fits"]["Δother"], law["verdicts"]["Δother"]
    )
    points = [{**p, "reverse_kl": None} for p in made_points()]  # no generated benchmark: no reverse KL
    law = fit_law(points, replicates=100, seed=0, confidence=0.95)
    assert set(law["fits"]["Δother"]) == set(MEASURES) - {"reverse_kl"}
    assert law["verdicts"]["Δother"]["best"] == "forward_kl"
