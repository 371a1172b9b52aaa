"""Every example of README.md and docs/*.md that claims to run is run, so the docs cannot drift.

Conventions (docs/architecture.md, "Examples in the docs"):

* a fenced ```python block is executed, as written, in a fresh namespace inside a temporary
  working folder;
* a block that is not meant to run says so, with its reason, either in its info string
  (```python no-run: downloads the 4 GB hub model; tests/diffusion/test_models.py) or in an HTML
  comment on the line before it (``<!-- no-run: reason -->``); the reason names the test that
  covers the code instead;
* ```bash blocks are not executed, except those marked ```bash run (trivial, fast commands such
  as ``brainrecon --help``), each line run by the shell with the virtual environment's commands
  first on PATH.

Some pages use names they do not define (the user's data: ``X_train``, ``z_pred``, ...). Each such
page has one PRELUDE below, named after the page, that defines those names from small simulated
data, the shipped demo model or files it writes into the working folder; the page says which
names its examples assume. A prelude never changes the example's code.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# README's first python block (the composition example) runs in tests/test_readme.py (slow, with
# its outputs checked): (page, index among the page's python blocks) -> the test that runs it.
RUN_ELSEWHERE = {("README.md", 0): "tests/test_readme.py"}

FENCE = re.compile(r"^(`{3,})(\S*)[ \t]*(.*)$")
NO_RUN_COMMENT = re.compile(r"^<!--\s*no-run\s*:?\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str  # file name relative to the repository root
    line: int  # line of the opening fence (1-based)
    lang: str
    info: str  # the rest of the info string
    code: str
    skip_reason: str | None  # None: the block runs

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse_blocks(text: str, page: str) -> list[Block]:
    """Fenced code blocks of a markdown text, with whether each runs and why not."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, info = match.groups()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        previous = next((s.strip() for s in reversed(lines[:i]) if s.strip()), "")
        comment = NO_RUN_COMMENT.match(previous)
        reason = None
        if info.startswith("no-run"):
            reason = info[len("no-run") :].lstrip(" :")
        elif comment:
            reason = comment.group(1)
        elif lang in ("bash", "sh", "console") and info != "run":
            reason = "shell commands run only when marked ```bash run"
        elif lang not in ("python", "bash", "sh", "console"):
            reason = f"{lang or 'plain'} block: not code"
        blocks.append(Block(page, i + 1, lang, info, "\n".join(lines[i + 1 : end]), reason))
        i = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [
        b for page in PAGES for b in parse_blocks(page.read_text(), str(page.relative_to(ROOT)))
    ]


# ---------------------------------------------------------------------------------------------
# Shared data, built once and only when a page needs it.


class Shared:
    """Small data the preludes draw on, each built on first use."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._cache: dict[str, object] = {}

    def _once(self, key: str, build: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def model(self) -> str:
        from nipype_brainrecon.diffusion.models import demo_model_path

        return str(demo_model_path())

    def simulated(self) -> Path:
        """One simulated participant, three short runs (a few seconds)."""
        from nipype_brainrecon.synthetic.simulate import simulate_dataset

        return self._once(
            "sim",
            lambda: simulate_dataset(
                self.base / "sim", n_subjects=1, n_runs=3, n_train=12, n_test=4, n_repeats=2, seed=3
            ),
        )


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Shared:
    return Shared(tmp_path_factory.mktemp("docs_shared"))


def _ridge_data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((60, 4 * 5 * 5))
    X_train, X_test = rng.standard_normal((40, 60)), rng.standard_normal((10, 60))
    noise = 0.5 * rng.standard_normal((50, weights.shape[1]))
    Y = np.concatenate([X_train, X_test]) @ weights + noise
    return {
        "X_train": X_train,
        "X_test": X_test,
        "Y_train": Y[:40].reshape(40, 4, 5, 5),
        "Y_test": Y[40:].reshape(10, 4, 5, 5),
    }


def prelude_ridge(shared: Shared, cwd: Path) -> dict:
    """X_train, Y_train, X_test, Y_test: trials × voxels and trials × (4, 5, 5) latents."""
    return _ridge_data()


def prelude_betas(shared: Shared, cwd: Path) -> dict:
    """rawdata/ and derivatives/fmriprep/: a simulated participant with three runs."""
    root = shared.simulated()
    (cwd / "rawdata").symlink_to(root, target_is_directory=True)
    (cwd / "derivatives").symlink_to(root / "derivatives", target_is_directory=True)
    return {}


def prelude_cluster(shared: Shared, cwd: Path) -> dict:
    """node: a Nipype node."""
    from nipype.interfaces.utility import IdentityInterface
    from nipype.pipeline import engine as pe

    return {"node": pe.Node(IdentityInterface(fields=["x"]), name="node")}


def prelude_datalad(shared: Shared, cwd: Path) -> dict:
    """fmriprep_dir, results_dir: two existing folders."""
    names = {"fmriprep_dir": cwd / "fmriprep", "results_dir": cwd / "results"}
    for folder in names.values():
        folder.mkdir()
    return {k: str(v) for k, v in names.items()}


def prelude_encoding(shared: Shared, cwd: Path) -> dict:
    """wf: an empty Nipype workflow."""
    from nipype.pipeline import engine as pe

    return {"wf": pe.Workflow(name="wf", base_dir=str(cwd))}


def prelude_evaluation(shared: Shared, cwd: Path) -> dict:
    """orig, recon: as the page's identification example makes them."""
    rng = np.random.default_rng(0)
    orig = rng.standard_normal((20, 50))
    recon = orig + rng.standard_normal((20, 50))
    recon[1] = recon[0]
    return {"orig": orig, "recon": recon}


def prelude_models(shared: Shared, cwd: Path) -> dict:
    """models/my-sd: the shipped demo model (a link)."""
    (cwd / "models").mkdir()
    (cwd / "models" / "my-sd").symlink_to(shared.model, target_is_directory=True)
    return {}


def prelude_outputs(shared: Shared, cwd: Path) -> dict:
    """A z decoder saved where a run writes it, and betas_of_new_trials for its ROI."""
    from nipype_brainrecon.ridge import fit_ridge_cv, save_decoder

    data = _ridge_data()
    decoder = fit_ridge_cv(data["X_train"], data["Y_train"], alphas="default", n_folds=3)
    (cwd / "sub-01" / "decoding").mkdir(parents=True)
    save_decoder(decoder, cwd / "sub-01/decoding/sub-01_target-z_roi-early_decoder", {})
    return {"betas_of_new_trials": data["X_test"]}


def prelude_rois(shared: Shared, cwd: Path) -> dict:
    """A 1 mm "atlas" (regions 1, 2, 3, 7, 8) and a 2 mm "BOLD" on a shifted grid, at the
    page's paths."""
    import nibabel as nib

    atlas = np.zeros((40, 40, 30), dtype=np.int16)
    for k, index in enumerate((1, 2, 3, 7, 8)):
        atlas[4 + 6 * k : 10 + 6 * k, 5:35, 5:25] = index
    atlas_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    atlas_affine[:3, 3] = [-20.0, -20.0, -15.0]
    (cwd / "atlases").mkdir()
    nib.Nifti1Image(atlas, atlas_affine).to_filename(
        cwd / "atlases/tpl-MNI152NLin2009cAsym_res-01_atlas-visual_dseg.nii.gz"
    )
    bold_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    bold_affine[:3, 3] = [-19.3, -18.6, -14.3]
    func = cwd / "derivatives/fmriprep/sub-01/func"
    func.mkdir(parents=True)
    nib.Nifti1Image(np.zeros((20, 20, 15, 4), np.float32), bold_affine).to_filename(
        func / "sub-01_task-vision_run-01_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz"
    )
    return {}


PRELUDES: dict[str, Callable[[Shared, Path], dict]] = {
    "docs/betas.md": prelude_betas,
    "docs/cluster.md": prelude_cluster,
    "docs/datalad.md": prelude_datalad,
    "docs/encoding.md": prelude_encoding,
    "docs/evaluation.md": prelude_evaluation,
    "docs/models.md": prelude_models,
    "docs/outputs.md": prelude_outputs,
    "docs/ridge.md": prelude_ridge,
    "docs/rois.md": prelude_rois,
}


# ---------------------------------------------------------------------------------------------
# The tests.

BLOCKS = all_blocks()
CODE_BLOCKS = [b for b in BLOCKS if b.lang in ("python", "bash", "sh", "console")]


@pytest.mark.parametrize("block", CODE_BLOCKS, ids=[b.id for b in CODE_BLOCKS])
def test_doc_block_runs(block: Block, shared: Shared, tmp_path, monkeypatch):
    python_blocks = [b for b in BLOCKS if b.page == block.page and b.lang == "python"]
    key = (block.page, python_blocks.index(block) if block in python_blocks else -1)
    if key in RUN_ELSEWHERE:
        pytest.skip(f"run by {RUN_ELSEWHERE[key]}")
    if block.skip_reason is not None:
        pytest.skip(block.skip_reason)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    if block.lang == "python":
        namespace: dict = {"__name__": "__doc_example__"}
        prelude = PRELUDES.get(block.page)
        if prelude is not None:
            namespace.update(prelude(shared, tmp_path))
        exec(compile(block.code, block.id, "exec"), namespace)  # noqa: S102 - our own docs
        return
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for command in block.code.splitlines():
        if command.strip() and not command.lstrip().startswith("#"):
            done = subprocess.run(command, shell=True, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"


def test_no_run_blocks_name_the_test_that_covers_them():
    """A python block that does not run says why and names an existing test file instead."""
    for block in BLOCKS:
        if block.lang == "python" and block.skip_reason is not None:
            named = re.findall(r"tests/[\w/]+\.py", block.skip_reason)
            assert named, f"{block.id}: no-run without the covering test ({block.skip_reason!r})"
            for path in named:
                assert (ROOT / path).is_file(), f"{block.id}: {path} does not exist"


def test_every_prelude_belongs_to_a_page():
    pages = {b.page for b in BLOCKS if b.lang == "python"}
    assert set(PRELUDES) <= pages, set(PRELUDES) - pages


NO_RUN = [b for b in BLOCKS if b.lang == "python" and b.skip_reason is not None]


@pytest.mark.parametrize("block", NO_RUN, ids=[b.id for b in NO_RUN])
def test_no_run_block_compiles_and_its_imports_resolve(block: Block):
    """A block that does not run is still valid Python (no `...` standing for arguments), and
    the names it imports exist (module paths follow the package's layout)."""
    tree = ast.parse(block.code, block.id)
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert imports, f"{block.id}: nothing to check"
    exec(compile(ast.Module(body=imports, type_ignores=[]), block.id, "exec"), {})  # noqa: S102


def test_parser_reads_the_markers():
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            "<!-- no-run: needs the hub model; tests/x.py -->",
            "```python",
            "b = 2",
            "```",
            "```python no-run: long; tests/y.py",
            "c = 3",
            "```",
            "```bash run",
            "brainrecon --help",
            "```",
            "```bash",
            "make demo",
            "```",
            "```yaml",
            "plugin: Linear",
            "```",
        ]
    )
    blocks = parse_blocks(text, "page.md")
    assert [(b.line, b.lang, b.code) for b in blocks] == [
        (1, "python", "a = 1"),
        (5, "python", "b = 2"),
        (8, "python", "c = 3"),
        (11, "bash", "brainrecon --help"),
        (14, "bash", "make demo"),
        (17, "yaml", "plugin: Linear"),
    ]
    reasons = [b.skip_reason for b in blocks]
    assert reasons[0] is None and reasons[3] is None
    assert reasons[1] == "needs the hub model; tests/x.py"
    assert reasons[2] == "long; tests/y.py"
    assert reasons[4].startswith("shell commands") and reasons[5].startswith("yaml")


def test_every_page_is_collected():
    pages = {b.page for b in BLOCKS}
    assert "README.md" in pages and "docs/ridge.md" in pages
    assert sum(b.lang == "python" for b in BLOCKS) >= 20
