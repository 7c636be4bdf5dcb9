"""The dashboard page renders on the built-in models and shows a prediction (Streamlit AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def test_opens_on_the_text_builtin():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value == "builtin:minilm-zeroshot"
    assert [m.value for m in at.metric][:3] == ["text", "6", "12"]
    at.text_area[0].input("The goalkeeper saved a penalty in the cup final").run()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 1


def test_shapes_builtin_and_bad_spec():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.selectbox[0].select("builtin:shapes-vit").run()
    assert not at.exception
    assert [m.value for m in at.metric][0] == "image"
    assert any("Planted shortcut" in i.value for i in at.info)
    at.sidebar.selectbox[0].select(at.sidebar.selectbox[0].options[-1]).run()
    at.sidebar.text_input[0].input("/no/such/model/folder").run()
    assert not at.exception
    assert "No such model folder" in at.error[0].value
