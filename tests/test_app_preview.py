"""The app's live preview decodes within a time budget and never decodes the last scale."""

from __future__ import annotations

import time

from varclip.app import PreviewBudget, stream_call


class SlowImages(list):
    """Stands for the pipeline's lazily decoded images: reading them costs `cost` seconds."""

    decodes = 0

    def __init__(self, cost: float):
        super().__init__()
        self.cost = cost

    def __iter__(self):
        SlowImages.decodes += 1
        time.sleep(self.cost)
        return iter(["img"])


def test_budget_spaces_decodes():
    SlowImages.decodes = 0
    budget = PreviewBudget(spacing=3.0)
    assert budget.decode(SlowImages(0.05)) == ["img"]  # the first scale is always shown
    assert budget.decode(SlowImages(0.05)) is None  # right after a 50 ms decode: skipped
    time.sleep(0.2)  # more than 3x the last decode's cost
    assert budget.decode(SlowImages(0.05)) == ["img"]
    assert SlowImages.decodes == 2


def test_stream_call_skips_the_last_scale():
    SlowImages.decodes = 0

    def call(callback_on_scale):
        for k in range(4):
            time.sleep(0.3)  # far above 3x a free decode, even on a loaded machine
            callback_on_scale(k, 4, SlowImages(0.0))
        return "out"

    items = list(stream_call(call))
    assert items[-1] == ("done", "out")
    scales = [it for it in items if it[0] == "scale"]
    assert scales and all(it[3] is None for it in scales if it[1] == 3)
    assert SlowImages.decodes == 3  # scales 0..2 (free decodes always fit the budget), not 3
