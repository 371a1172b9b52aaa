"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_composing_example_builds_a_connected_graph():
    blocks = _python_blocks()
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    wf = namespace["wf"]
    names = wf.list_node_names()
    assert "decoding_wf.fit_z" in names and "reconstruction_wf.reconstruct" in names
    assert namespace["decoding"].get_node("roi_z").inputs.roi_names == ["V1", "V2", "V3"]


def test_readme_has_exactly_two_setup_commands():
    section = README.read_text().split("## Set up", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make \w+", section, flags=re.M)
    assert commands == ["make demo", "make test"]
