"""A pipeline run pushes its dataset to a DVC remote; a checkout pulls exactly that dataset."""

import filecmp

import pytest

from cuelab.errors import CuelabError
from cuelab.tracking import dataset_version
from cuelab.versioning import push_dataset
from test_dvc import sh

pytestmark = pytest.mark.slow


def test_pushed_dataset_is_pulled_back_byte_for_byte(tiny_dataset, tmp_path):
    remote = tmp_path / "remote"
    pushed = push_dataset(tiny_dataset["images"], str(remote), tmp_path / "images.dvc")
    assert pushed.md5 == dataset_version(tiny_dataset["images"])  # what dvc.lock would record
    assert pushed.files == len(list(tiny_dataset["images"].iterdir()))
    assert any(remote.rglob("*"))

    # a user's checkout: git + dvc, the remote configured, the pointer committed; then `dvc pull`
    repo = tmp_path / "checkout"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "remote", "add", "-d", "store", str(remote), cwd=repo)
    (repo / "images.dvc").write_text(pushed.dvc_file.read_text())
    sh("dvc", "pull", "-q", cwd=repo)
    cmp = filecmp.dircmp(tiny_dataset["images"], repo / "images")
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
    assert sorted(cmp.same_files) == sorted(p.name for p in tiny_dataset["images"].iterdir())


def test_push_needs_a_remote_and_a_directory(tiny_dataset, tmp_path):
    with pytest.raises(CuelabError, match="dvc_remote: got ''"):
        push_dataset(tiny_dataset["images"], "", tmp_path / "x.dvc")
    with pytest.raises(CuelabError, match="not a directory"):
        push_dataset(tmp_path / "nothing", str(tmp_path / "r"), tmp_path / "x.dvc")
    assert not (tmp_path / "x.dvc").exists()
