"""install_model / list_models / resolve_model, including unsafe archives."""

from __future__ import annotations

import hashlib
import shutil
import zipfile

import pytest

from mousecord.errors import ConfigError, ModelFolderError, MousecordWarning
from mousecord.models.registry import install_model, list_models, resolve_model
from tests.inference.helpers import tiny_bundle_folder
from tests.models.nnunet_fixtures import make_nnunet_folder


@pytest.fixture(scope="module")
def bundle_folder(tmp_path_factory):
    return tiny_bundle_folder(tmp_path_factory.mktemp("src") / "tiny")


def _zip_folder(folder, archive):
    shutil.make_archive(str(archive.with_suffix("")), "zip", folder.parent, folder.name)
    return archive


def test_install_zip_with_sha256_then_list_and_resolve(bundle_folder, tmp_path, monkeypatch):
    monkeypatch.setattr("mousecord.models.registry.SHIPPED_MODELS_DIR", tmp_path / "no-shipped-models")
    archive = _zip_folder(bundle_folder, tmp_path / "tiny.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    installed = install_model(archive, sha256=digest, models_dir=tmp_path / "models")
    assert installed == tmp_path / "models" / "tiny"
    assert [model.name for model in list_models(models_dir=tmp_path / "models")] == ["tiny"]
    assert resolve_model("tiny", models_dir=tmp_path / "models").name == "tiny"
    with pytest.raises(ModelFolderError, match="already installed"):
        install_model(archive, models_dir=tmp_path / "models")


def test_install_nnunet_folder_and_resolve_paths(tmp_path):
    make_nnunet_folder(tmp_path / "src", features_per_stage=(4, 8, 16, 32, 32, 32))
    installed = install_model(tmp_path / "src", name="ref", models_dir=tmp_path / "models")
    by_name = resolve_model("ref", models_dir=tmp_path / "models")
    assert by_name.metadata["trainer"] == "nnUNetTrainer" and by_name.installed_name == "ref"
    by_folder = resolve_model(installed)
    assert by_folder.patch_size_vox == (32, 48, 48) and by_folder.installed_name is None


def test_sha256_mismatch_installs_nothing(bundle_folder, tmp_path):
    archive = _zip_folder(bundle_folder, tmp_path / "tiny.zip")
    with pytest.raises(ModelFolderError, match="sha256 mismatch"):
        install_model(archive, sha256="0" * 64, models_dir=tmp_path / "models")
    assert not [path for path in (tmp_path / "models").iterdir()]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("../evil.txt", "a '..' component"),
        ("/tmp/evil.txt", "an absolute path"),
        ("tiny/../../evil.txt", "a '..' component"),
        ("C:/evil.txt", "a drive letter"),
        ("tiny/link", "a symbolic link"),
    ],
)
def test_zip_slip_is_refused(bundle_folder, tmp_path, entry, reason):
    archive = _zip_folder(bundle_folder, tmp_path / "tiny.zip")
    with zipfile.ZipFile(archive, "a") as zipped:
        info = zipfile.ZipInfo(entry)
        if entry.endswith("link"):
            info.external_attr = 0o120777 << 16  # a symbolic link to the entry's content
        zipped.writestr(info, "../../evil.txt" if entry.endswith("link") else "x")
    with pytest.raises(ModelFolderError, match=rf"unsafe entry '{entry}' \({reason}"):
        install_model(archive, models_dir=tmp_path / "models")
    assert not list((tmp_path / "models").iterdir())
    assert not (tmp_path / "evil.txt").exists()


def test_not_a_zip_and_url_errors(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFolderError, match="not a valid zip"):
        install_model(bad, models_dir=tmp_path / "models")
    with pytest.raises(ModelFolderError, match="download failed"):
        install_model("http://127.0.0.1:9/model.zip", models_dir=tmp_path / "models")


def test_default_lookup(bundle_folder, tmp_path, monkeypatch):
    monkeypatch.setattr("mousecord.models.registry.SHIPPED_MODELS_DIR", tmp_path / "no-shipped-models")
    with pytest.raises(ModelFolderError, match="no default model"):
        resolve_model(None, models_dir=tmp_path / "models")
    with pytest.warns(MousecordWarning, match="in place of the model shipped with mousecord"):
        install_model(bundle_folder, name="default", models_dir=tmp_path / "models")
    assert resolve_model(None, models_dir=tmp_path / "models").name == "tiny"
    shipped = tmp_path / "package"
    shutil.copytree(bundle_folder, shipped / "default")
    monkeypatch.setattr("mousecord.models.registry.SHIPPED_MODELS_DIR", shipped)
    models = list_models(models_dir=tmp_path / "empty")
    assert [(model.name, model.shipped) for model in models] == [("default", True)]
    assert resolve_model(None, models_dir=tmp_path / "empty").name == "tiny"


def test_a_training_runs_bundle_folder_installs_under_the_runs_name_and_names_are_checked(
    bundle_folder, tmp_path
):
    """``runs/res3/model`` installs as its model.json's name, not as 'model'; an empty or spaced name is
    refused; a second install of a name says how to keep both or replace it."""
    run_bundle = tmp_path / "runs" / "res3" / "model"
    shutil.copytree(bundle_folder, run_bundle)
    models = tmp_path / "models"
    assert install_model(run_bundle, models_dir=models).name == "tiny"  # the bundle's own name
    with pytest.raises(ModelFolderError, match=r"already installed; install this one under another name"):
        install_model(run_bundle, models_dir=models)
    for bad in ("", "Default ", "my model", "../x", "a:b"):
        with pytest.raises(ConfigError, match=r"invalid model name .*\(give one with name=NAME\)"):
            install_model(bundle_folder, name=bad, models_dir=models)
    import json

    spaced = tmp_path / "runs" / "my run" / "model"  # a run folder with a space: its name made safe
    shutil.copytree(bundle_folder, spaced)
    description = json.loads((spaced / "model.json").read_text())
    (spaced / "model.json").write_text(json.dumps({**description, "name": "my run"}))
    assert install_model(spaced, models_dir=models, overwrite=True).name == "my-run"


def test_a_model_archive_given_as_a_model_says_to_install_it(bundle_folder, tmp_path):
    from mousecord.models.registry import load_model_folder

    archive = tmp_path / "tiny.zip"
    _zip_folder(bundle_folder, archive)
    with pytest.raises(ModelFolderError, match=r"tiny.zip: a model archive: install it first"):
        load_model_folder(archive)
