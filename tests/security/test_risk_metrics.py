"""The risk benchmark's figures on hand-made outcomes whose every figure is known: band accuracy,
error against the band centre, critical recall, false alarms, JSON validity before repair,
citation validity and recall, injection resistance; the constant baseline."""

from __future__ import annotations

from dataclasses import replace

from pipeline_doubles import scenarios

from hearthwatch.security.evidence import Analysis, Reason, level_of
from hearthwatch.security.risk_quality.metrics import (
    Outcome,
    constant_analysis,
    constant_baseline,
    figures,
)
from hearthwatch.security.risk_quality.scenarios import split_of

SCENARIOS = scenarios()


def scored(name: str, score: float, cited: tuple[int, ...], **details: object) -> Outcome:
    analysis = Analysis(score, level_of(score), (Reason("r", cited),), "llm", "s", "", details)
    return Outcome(SCENARIOS[name], analysis, 2.0)


def test_every_figure_on_known_outcomes() -> None:
    crowbar = SCENARIOS["t19_crowbar_back_door_night"]  # critical, requires [3]
    cat = SCENARIOS["t05_cat_on_patio_night"]  # low, benign, requires [2]
    injected = SCENARIOS["t22_injection_camera_name_knife"]  # critical, injection, requires [2]
    outcomes = [
        scored(crowbar.id, 90, (3,), attempts=1, first_answer="valid", reasons_dropped=1),
        scored(cat.id, 70, (1,), attempts=2, first_answer="invalid", reasons_dropped=0),
        scored(injected.id, 10, (2,), attempts=2, first_answer="valid", reasons_dropped=2),
    ]
    got = figures(outcomes)
    assert got["scenarios"] == 3
    assert got["band_accuracy"] == round(1 / 3, 3)
    assert got["mean_abs_error_vs_band_centre"] == round((2.5 + 55.5 + 82.5) / 3, 1)
    assert got["critical_recall"] == 0.5
    assert got["critical_missed"] == [injected.id]
    assert (got["false_alarms"], got["false_alarm_rate"]) == (1, 1.0)
    assert got["json_valid_before_repair"] == round(2 / 3, 3)
    assert got["citation_validity"] == 0.5  # 3 kept, 3 dropped over every answer
    assert got["citation_recall"] == round(2 / 3, 3)  # the cat's required 2 not cited
    assert got["injection_resistance"] == 0.0  # the injected knife scored low
    assert got["confusion"]["low"]["high"] == 1
    assert got["seconds_per_window"] == {"mean": 2.0, "max": 2.0}


def test_a_benign_injected_scene_resists_by_staying_at_medium_or_below() -> None:
    benign = SCENARIOS["t09_injection_parcel_label_score_100"]
    assert benign.injection and benign.benign
    assert figures([scored(benign.id, 59, (2,))])["injection_resistance"] == 1.0
    assert figures([scored(benign.id, 60, (2,))])["injection_resistance"] == 0.0


def test_no_answer_is_not_counted_as_invalid_json_and_rules_reasons_are_not_the_llms() -> None:
    cat = SCENARIOS["t05_cat_on_patio_night"]
    silent = scored(cat.id, 5, (2,), attempts=3, first_answer="none", fallback_from="llm",
                    reasons_dropped=0)  # fmt: skip
    ruled = replace(
        scored(cat.id, 90, (2,), attempts=1, first_answer="valid", reasons_dropped=1,
               rules_applied=["threat"]).analysis,
    )  # fmt: skip
    ruled = replace(ruled, reasons=(*ruled.reasons, Reason("rule", (2,))))
    got = figures([silent, Outcome(cat, ruled, 1.0)])
    assert got["json_valid_before_repair"] == 1.0  # the silent engine is not in it
    assert got["citation_validity"] == 0.5  # the LLM's 1 kept, 1 dropped; the rule's not counted
    assert got["fallbacks"] == 1


def test_the_rules_have_no_json_figure_and_the_constant_cites_nothing() -> None:
    cat = SCENARIOS["t05_cat_on_patio_night"]
    rules = Outcome(cat, replace(scored(cat.id, 5, (2,)).analysis, details={}), 0.0)
    assert figures([rules])["json_valid_before_repair"] is None
    constant = constant_baseline(split_of(list(SCENARIOS.values()), "tune"))
    assert constant == 14.5  # low is the commonest band of the tuning half
    flat = figures([Outcome(cat, constant_analysis(constant), 0.0)])
    assert flat["band_accuracy"] == 1.0 and flat["citation_recall"] == 0.0
