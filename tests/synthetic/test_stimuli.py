"""The default stimuli: generated scenes, captions, semantics, and reading a stimuli folder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from nipype_brainrecon.errors import DataError, MissingInputError, UsageError
from nipype_brainrecon.synthetic import stimuli as st


def test_scenes_are_deterministic_from_the_seed():
    a = st.generate_scenes(30, seed=7)
    b = st.generate_scenes(30, seed=7)
    c = st.generate_scenes(30, seed=8)
    assert a == b
    assert a != c
    assert len(set(a)) == 30  # distinct
    pix_a = np.asarray(st.render_scene(a[0]))
    pix_b = np.asarray(st.render_scene(b[0]))
    np.testing.assert_array_equal(pix_a, pix_b)
    assert st.scene_captions(a[3], 5, rng=1) == st.scene_captions(b[3], 5, rng=1)


def test_scenes_vary_every_factor():
    scenes = st.generate_scenes(200, seed=0)
    objs = [o for s in scenes for o in s.objects]
    assert {o.shape for o in objs} == set(st.SHAPES)
    assert {o.colour for o in objs} == set(st.COLOURS)
    assert {o.size for o in objs} == set(st.SIZES)
    assert {s.background for s in scenes} == set(st.BACKGROUNDS)
    assert {len(s.objects) for s in scenes} == {1, 2}
    for s in scenes:
        assert all(o.colour != s.background for o in s.objects)
        if len(s.objects) == 2:  # two objects never overlap
            a, b = s.objects
            assert np.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius


def test_render_draws_objects_where_the_scene_says():
    scene = st.Scene(
        (
            st.SceneObject("square", "red", "large", 0.3, 0.3),
            st.SceneObject("star", "blue", "small", 0.8, 0.8),
        ),
        background="grey",
    )
    img = st.render_scene(scene, size=128)
    assert img.mode == "RGB" and img.size == (128, 128)
    pix = np.asarray(img).astype(int)
    for obj in scene.objects:
        centre = pix[int(obj.y * 128), int(obj.x * 128)]
        assert np.abs(centre - st.COLOURS[obj.colour]).max() < 10
    assert np.abs(pix[2, 125] - st.BACKGROUNDS["grey"]).max() < 3


def test_captions_name_each_object_and_differ():
    for scene in st.generate_scenes(60, seed=3):
        caps = st.scene_captions(scene, 5, rng=0)
        assert len(caps) == 5 and len(set(caps)) == 5
        for cap in caps:
            for obj in scene.objects:
                assert obj.shape in cap and obj.colour in cap, (cap, scene)
        # three of the six templates name the background, so any five include it
        assert any(scene.background in c for c in caps)
    scene = st.Scene((st.SceneObject("triangle", "red", "small", 0.2, 0.5),), "grey")
    assert "a small red triangle on a grey background" in st.scene_captions(scene, 6)
    assert "a red triangle on the left" in st.scene_captions(scene, 6)
    two = st.Scene(
        (
            st.SceneObject("triangle", "red", "small", 0.2, 0.5),
            st.SceneObject("square", "blue", "large", 0.75, 0.5),
        ),
        "grey",
    )
    assert "a small red triangle on the left of a blue square" in st.scene_captions(two, 6)
    assert "an orange circle in the centre" in st.scene_captions(
        st.Scene((st.SceneObject("circle", "orange", "medium", 0.5, 0.5),), "white"), 6
    )


def test_semantics_carry_meaning_not_layout():
    a = st.Scene(
        (
            st.SceneObject("circle", "red", "small", 0.2, 0.2),
            st.SceneObject("cross", "green", "large", 0.7, 0.7),
        ),
        "black",
    )
    moved = st.Scene(tuple(dataclasses.replace(o, x=1 - o.x) for o in a.objects), "black")
    recoloured = st.Scene((dataclasses.replace(a.objects[0], colour="blue"), a.objects[1]), "black")
    va = st.scene_semantics(a)
    assert va.shape == (len(st.SEMANTIC_FEATURES),)
    np.testing.assert_array_equal(va, st.scene_semantics(moved))
    assert not np.array_equal(va, st.scene_semantics(recoloured))
    named = dict(zip(st.SEMANTIC_FEATURES, va, strict=True))
    assert named["shape-circle"] == 1 and named["shape-cross"] == 1
    assert named["colour-red"] == 1 and named["colour-green"] == 1 and named["colour-blue"] == 0
    assert named["size-small"] == 1 and named["size-large"] == 1
    assert named["background-black"] == 1 and sum(v for k, v in named.items() if "back" in k) == 1
    assert va[: len(st.SHAPES)].sum() == 2


def test_invalid_scene_values_are_usage_errors():
    with pytest.raises(UsageError, match="hexagon"):
        st.SceneObject("hexagon", "red", "small", 0.5, 0.5)
    with pytest.raises(UsageError, match="position"):
        st.SceneObject("circle", "red", "small", 1.5, 0.5)
    with pytest.raises(UsageError, match="background"):
        st.Scene((st.SceneObject("circle", "red", "small", 0.5, 0.5),), "pink")


def test_write_and_read_stimuli_round_trip(tmp_path):
    scenes = st.generate_scenes(6, seed=2)
    written = st.write_stimuli(tmp_path / "a", scenes, size=64, n_captions=4, seed=2)
    st.write_stimuli(tmp_path / "b", scenes, size=64, n_captions=4, seed=2)
    got = st.read_stimuli(tmp_path / "a")
    assert got.files == [f"stim-{i:04d}.png" for i in range(1, 7)] == written.files
    assert got.captions == written.captions
    assert all(len(c) == 4 for c in got.captions.values())
    for name in got.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        with Image.open(tmp_path / "a" / name) as img:
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (64, 64)
    header = (tmp_path / "a" / st.CAPTIONS_FILE).read_text().splitlines()[0]
    assert header == "stim_file\tcaption"
    assert got.load_image(got.files[0], size=32).size == (32, 32)


def _folder(tmp_path, rows: str, images=("x.png", "sub/y.png")):
    root = tmp_path / "user"
    for name in images:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (10, 20, 30)).save(root / name)
    if rows is not None:
        (root / st.CAPTIONS_FILE).write_text("stim_file\tcaption\n" + rows)
    return root


def test_read_user_folder(tmp_path):
    root = _folder(
        tmp_path, "x.png\ta dark square\nsub/y.png\tanother one\nx.png\tsecond caption\n"
    )
    got = st.read_stimuli(root)
    assert got.files == ["sub/y.png", "x.png"]
    assert got.captions["x.png"] == ["a dark square", "second caption"]


@pytest.mark.parametrize(
    ("rows", "error", "pattern", "code"),
    [
        (None, MissingInputError, "captions table not found", 66),
        ("x.png\ta caption\n", DataError, r"y\.png: image has no caption", 65),
        ("x.png\ta\nsub/y.png\tb\nz.png\tc\n", MissingInputError, r"z\.png: image listed", 66),
        ("x.png\t  \nsub/y.png\tb\n", DataError, r"line 2 \(x\.png\) has an empty caption", 65),
    ],
)
def test_read_user_folder_errors(tmp_path, rows, error, pattern, code):
    root = _folder(tmp_path, rows)
    with pytest.raises(error, match=pattern) as info:
        st.read_stimuli(root)
    assert info.value.exit_code == code
    assert "\n" not in str(info.value)


def test_read_errors_for_bad_table_and_folder(tmp_path):
    with pytest.raises(MissingInputError, match="stimuli folder not found"):
        st.read_stimuli(tmp_path / "absent")
    root = _folder(tmp_path, None)
    (root / st.CAPTIONS_FILE).write_text("image\ttext\nx.png\ta\n")
    with pytest.raises(DataError, match="no column 'stim_file'"):
        st.read_stimuli(root)


def test_caption_semantics_bag_of_words():
    caps = {
        "a.png": ["a red circle", "red round thing"],
        "b.png": ["a blue circle", "blue disc"],
        "c.png": ["a red square", "something"],
    }
    feats, vocab = st.caption_semantics(caps)
    # words of at least two images, no stop words ("blue" is in b.png only)
    assert vocab == ["circle", "red"]
    assert feats.shape == (3, 2)
    np.testing.assert_allclose(feats, [[0.5, 1.0], [0.5, 0.0], [0.0, 0.5]])
