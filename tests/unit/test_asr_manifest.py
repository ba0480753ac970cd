"""The model manifest and provisioning (PyPI parts, mirror folders and archives, sha256 checks)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from assistant.errors import ModelMissingError
from dialect_models import provision
from dialect_models.manifest import Archive, ModelFile, ModelSpec, get_spec, load_manifest

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def test_manifest_lists_the_three_models_with_everything_a_user_needs():
    specs = {s.id: s for s in load_manifest()}
    assert {"whisper-base", "vosk-model-small-cn-0.22", "sense-voice-zh-en-ja-ko-yue-2024-07-17"} <= set(specs)
    for s in specs.values():
        assert s.engine in {"faster-whisper", "vosk", "sherpa-onnx", "kokoro-onnx"}  # kokoro: a TTS model (#22)
        assert s.dialects and set(s.dialects) <= {"cmn", "yue"}
        assert s.sample_rate_hz == (24000 if s.engine == "kokoro-onnx" else 16000)
        assert s.licence and s.size_bytes > 0 and s.official_url
        assert s.files and all(SHA256.match(f.sha256) and f.size_bytes >= 0 for f in s.files)
        assert s.pypi or s.archive or s.registries  # some way to get it


def test_manifest_pins_the_checksums_from_the_model_notes():
    whisper = get_spec("whisper-base")
    assert {f.path: f.sha256 for f in whisper.files}["model.bin"] == (
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    )
    assert whisper.pypi is not None and len(whisper.pypi.packages) == 2
    vosk = get_spec("vosk-model-small-cn-0.22")
    assert vosk.archive is not None and vosk.archive.sha256 == (
        "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"
    )
    assert {"am/final.mdl", "graph/HCLr.fst", "graph/Gr.fst", "conf/model.conf"} <= {f.path for f in vosk.files}
    sense = get_spec("sense-voice-zh-en-ja-ko-yue-2024-07-17")
    assert {f.path for f in sense.files} == {"model.int8.onnx", "tokens.txt"}


def test_unknown_model_is_a_coded_error():
    with pytest.raises(ModelMissingError, match="unknown model"):
        get_spec("no-such-model")


def _tiny_spec(files: dict[str, bytes], *, archive: Archive | None = None) -> ModelSpec:
    """A two-file stand-in model (real provisioning code, fake tiny payload)."""
    return ModelSpec(
        id="tiny-test-model",
        engine="vosk",
        dialects=("cmn",),
        sample_rate_hz=16000,
        licence="test",
        description="",
        size_bytes=sum(len(b) for b in files.values()),
        files=tuple(
            ModelFile(path=p, sha256=hashlib.sha256(b).hexdigest(), size_bytes=len(b)) for p, b in files.items()
        ),
        official_url="http://127.0.0.1:9/never-used.zip",
        archive=archive,
        mirror_names=("tiny-test-model.zip",),
    )


FILES = {"am/final.mdl": b"acoustic model bytes", "conf/model.conf": b"--min-active=200\n"}


def _with_mirror(settings, mirror: Path):
    paths = dataclasses.replace(settings.paths, model_mirror_dirs=(mirror,))
    return dataclasses.replace(settings, paths=paths)


def test_fetch_from_a_mirror_folder_checks_and_installs(settings, tmp_path):
    mirror = tmp_path / "mirror"
    for rel, data in FILES.items():
        (mirror / "tiny-test-model" / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / "tiny-test-model" / rel).write_bytes(data)
    s = _with_mirror(settings, mirror)
    spec = _tiny_spec(FILES)
    assert provision.state(spec, s) == "missing"
    out = provision.fetch(spec.id, s, allow_download=False, progress=False, spec=spec)
    assert out.ok and out.source.startswith("mirror:")
    assert provision.state(spec, s) == "present"
    assert provision.verify(spec, s) == []
    assert provision.require(spec.id, s, spec=spec) == s.paths.models_dir / spec.id
    again = provision.fetch(spec.id, s, allow_download=False, progress=False, spec=spec)
    assert again.ok and again.source == "present"


def test_fetch_from_a_mirror_archive_strips_the_prefix(settings, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    zpath = mirror / "tiny-test-model.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for rel, data in FILES.items():
            z.writestr(f"tiny-test-model/{rel}", data)
        z.writestr("tiny-test-model/README", b"not in the manifest: skipped")
    archive = Archive(
        name=zpath.name, sha256=hashlib.sha256(zpath.read_bytes()).hexdigest(), size_bytes=None,
        strip_prefix="tiny-test-model/",
    )
    s = _with_mirror(settings, mirror)
    spec = _tiny_spec(FILES, archive=archive)
    out = provision.fetch(spec.id, s, allow_download=False, progress=False, spec=spec)
    assert out.ok, out.message
    assert (s.paths.models_dir / spec.id / "am" / "final.mdl").read_bytes() == FILES["am/final.mdl"]
    assert not (s.paths.models_dir / spec.id / "README").exists()


def test_a_corrupt_mirror_file_is_rejected_and_nothing_is_installed(settings, tmp_path):
    mirror = tmp_path / "mirror"
    for rel, data in FILES.items():
        (mirror / "tiny-test-model" / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / "tiny-test-model" / rel).write_bytes(data)
    (mirror / "tiny-test-model" / "am" / "final.mdl").write_bytes(b"acoustic model bytez")  # same size
    s = _with_mirror(settings, mirror)
    spec = _tiny_spec(FILES)
    out = provision.fetch(spec.id, s, allow_download=False, progress=False, spec=spec)
    assert not out.ok and "sha256" in out.message
    assert provision.state(spec, s) == "missing"
    with pytest.raises(ModelMissingError, match="assistant models fetch tiny-test-model"):
        provision.require(spec.id, s, spec=spec)


def test_offline_fetch_of_an_unavailable_model_reports_the_url_instead_of_downloading(settings, tmp_path):
    s = _with_mirror(settings, tmp_path / "empty-mirror")
    out = provision.fetch("vosk-model-small-cn-0.22", s, allow_download=False, progress=False)
    assert not out.ok
    assert "alphacephei.com" in out.message and "assistant models fetch vosk-model-small-cn-0.22" in out.message


def test_defaults_are_what_the_settings_name(settings):
    ids = provision.default_model_ids(settings)
    assert ids[0] == settings.asr.default_model_cmn
    assert len(ids) == len(set(ids))


def test_models_cli_lists_licence_and_state(settings, capsys, monkeypatch):
    import argparse

    from dialect_models import cli

    monkeypatch.setenv("ASSISTANT_VAR_DIR", str(settings.paths.var_dir))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["list"])) == 0
    out = capsys.readouterr().out
    assert "vosk-model-small-cn-0.22" in out and "Apache-2.0" in out and "missing" in out
