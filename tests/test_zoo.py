"""The model zoo: `pretrained:NAME` fetched from a server on 127.0.0.1 into the cache (resumed,
checked, locked, refetched when corrupt), refused in one line when it cannot be, and a catalogue
model (EfficientAT's smallest, on seeded weights) through every command on the tiny data."""

import hashlib
import json
import re
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from helpers import (
    assert_one_line_error,
    released_run_goes_through_every_command,
    run_cli,
)

from audioscene import models
from audioscene.checkpoints import Checkpoint, Run
from audioscene.errors import FetchError
from audioscene.pretrained import CATALOGUE, run_folder

NAME = "efficientat_mn04_as"


def assert_error_line(result, *fragments: str) -> None:
    """One error line (after the log line that says what is fetched from where), no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert all(" INFO " in line for line in lines[:-1]) and lines[-1].startswith("audioscene "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


class Files(BaseHTTPRequestHandler):
    """Serves `files` (path → bytes) with Range support; `cut` (path → bytes) ends the next
    transfer of that path after so many bytes; every GET is counted in `gets`."""

    files: dict[str, bytes] = {}
    cut: dict[str, int] = {}
    gets: list[tuple[str, str | None]] = []

    def do_GET(self):
        type(self).gets.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        end = start + self.cut.pop(self.path) if self.path in self.cut else len(body)
        self.wfile.write(body[start:end])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def release_bytes(tmp_path_factory):
    """A release file of mn04_as's shape with seeded weights (their format: a bare state dict)."""
    torch.manual_seed(4)
    model = models.create("efficientat_mn04")
    with torch.no_grad():
        for module in model.modules():  # BatchNorm statistics of an audio-like scale
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("release") / "mn04_as.pt"
    torch.save(model.state_dict(), path)
    return path.read_bytes()


@pytest.fixture
def zoo(release_bytes, tmp_path, monkeypatch):
    """A server holding the release, the catalogue entry pointing at it (with its size and
    SHA-256), and an empty cache."""
    Files.files, Files.cut, Files.gets = {"/mn04.pt": release_bytes}, {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/mn04.pt"
    monkeypatch.setitem(CATALOGUE, NAME, replace(CATALOGUE[NAME], url=url, size=len(release_bytes),
                                                  sha256=hashlib.sha256(release_bytes).hexdigest()))
    monkeypatch.setenv("AUDIOSCENE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("AUDIOSCENE_OFFLINE", raising=False)
    yield url
    httpd.shutdown()


def test_first_use_fetches_checks_converts_and_reuses(zoo, tmp_path, monkeypatch):
    run = Run.open(f"pretrained:{NAME}")
    assert run.folder == tmp_path / "cache" / "runs" / NAME and len(Files.gets) == 1
    (path, state), = run.last()
    assert state.source["catalogue"] == NAME and state.source["sha256"] == CATALOGUE[NAME].sha256
    assert state.frontend_config["kind"] == "efficientat" and len(state.labels) == 527
    assert Run.open(f"pretrained:{NAME}").folder == run.folder and len(Files.gets) == 1  # reused, not fetched
    loads, real_load = [], Checkpoint.load.__func__
    with monkeypatch.context() as patched:
        patched.setattr(Checkpoint, "load", classmethod(lambda cls, path, **kw: loads.append(path) or
                                                        real_load(cls, path, **kw)))
        Run.open(f"pretrained:{NAME}").best()
    assert len(loads) == 1  # loaded once: to check the cache, then kept by the run
    (tmp_path / "cache" / "runs" / NAME / "epoch_001.pt").write_bytes(b"garbage")  # a corrupt cached run
    assert Checkpoint.load(run_folder(NAME) / "epoch_001.pt").source["catalogue"] == NAME
    assert len(Files.gets) == 2  # detected and fetched again


def test_a_cut_transfer_resumes_where_it_stopped(zoo, tmp_path, release_bytes):
    Files.cut["/mn04.pt"] = 1_000_000
    with pytest.raises(FetchError, match="the transfer stopped after 1,000,000 of"):
        run_folder(NAME)
    part = tmp_path / "cache" / "downloads" / f"{CATALOGUE[NAME].file_name}.part"
    assert part.stat().st_size == 1_000_000
    run_folder(NAME)
    assert Files.gets[-1] == ("/mn04.pt", "bytes=1000000-") and not part.exists()
    downloaded = tmp_path / "cache" / "downloads" / CATALOGUE[NAME].file_name
    assert downloaded.read_bytes() == release_bytes


def test_a_wrong_checksum_or_size_is_refused_and_nothing_is_kept(zoo, tmp_path, monkeypatch):
    monkeypatch.setitem(CATALOGUE, NAME, replace(CATALOGUE[NAME], sha256="0" * 64))
    assert_error_line(run_cli("pretrained", "get", NAME), f"{zoo}: SHA-256", "expected 000000000000...",
                          "the file was removed", f"pretrained import {NAME} FILE")
    monkeypatch.setitem(CATALOGUE, NAME, replace(CATALOGUE[NAME], size=12345))
    with pytest.raises(FetchError, match="bytes, expected 12,345; the partial file was removed"):
        run_folder(NAME)
    assert not list((tmp_path / "cache" / "downloads").iterdir()) and not (tmp_path / "cache" / "runs").exists()


def test_404_no_network_offline_and_an_unwritable_cache_are_one_line_each(zoo, tmp_path, monkeypatch):
    monkeypatch.setitem(CATALOGUE, NAME, replace(CATALOGUE[NAME], url=zoo.replace("mn04", "gone")))
    assert_error_line(run_cli("pretrained", "get", NAME), "gone.pt: HTTP 404", f"pretrained import {NAME} FILE")
    monkeypatch.setitem(CATALOGUE, NAME, replace(CATALOGUE[NAME], url="http://127.0.0.1:9/mn04.pt"))  # nothing listens
    assert_error_line(run_cli("tag", str(tmp_path), "--run", f"pretrained:{NAME}"),
                          "http://127.0.0.1:9/mn04.pt: cannot be reached", f"pretrained import {NAME} FILE")
    assert_one_line_error(run_cli("--offline", "pretrained", "get", NAME), "not in the cache", "and offline",
                          f"pretrained import {NAME} FILE")
    (tmp_path / "file").write_text("in the way")
    monkeypatch.setenv("AUDIOSCENE_HOME", str(tmp_path / "file" / "cache"))
    assert_one_line_error(run_cli("pretrained", "get", NAME), "cannot create this folder")
    assert_one_line_error(run_cli("pretrained", "get", "nope"), "unknown pretrained model 'nope'", NAME)


def test_two_fetching_at_once_leave_one_good_copy(zoo):
    folders, errors = [], []

    def fetch():
        try:
            folders.append(run_folder(NAME))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and folders[0] == folders[1] and len(Files.gets) == 1
    Checkpoint.load(folders[0] / "epoch_001.pt")


def test_a_file_fetched_by_hand_is_imported_and_used_offline(zoo, tmp_path, release_bytes, monkeypatch):
    (tmp_path / "by_hand.pt").write_bytes(release_bytes)
    result = run_cli("pretrained", "import", NAME, str(tmp_path / "by_hand.pt"))
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv("AUDIOSCENE_OFFLINE", "1")
    assert Run.open(f"pretrained:{NAME}").first.source["imported_from"] == "by_hand.pt" and not Files.gets
    listing = json.loads(run_cli("pretrained", "list", "--format", "json").stdout)
    assert {row["name"] for row in listing} == set(CATALOGUE) and all(row["published"]["mAP"] > 0.3 for row in listing)


def test_a_zoo_model_goes_through_every_command(zoo, tiny_data, tmp_path):
    """tag, detect (DCASE classes), predict, export-onnx (ONNX Runtime parity), evaluate, report (its
    published row beside ours) and fine-tuning onto the tiny data's labels, all by name."""
    walked = released_run_goes_through_every_command(f"pretrained:{NAME}", tiny_data, tmp_path,
                                                     "EfficientAT mn04_as (Schmid et al. 2023)", "0.432",
                                                     "classifier.5.weight")
    state, source = walked["tuned"], walked["release"]
    assert state.model_config["name"] == "efficientat_mn04" and state.frontend_config["kind"] == "efficientat"
    torch.testing.assert_close(state.model["features.0.0.weight"], source["features.0.0.weight"])  # the trunk kept


def test_an_ensemble_averages_its_members_each_through_its_own_front_end(zoo, tiny_data, tmp_path):
    from audioscene.audio import load
    from audioscene.features import FrontendConfig, LogMel
    from audioscene.predictor import Predictor
    from audioscene.pretrained import import_release

    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    wave = torch.from_numpy(load(clip, sr=32000))[None]
    efficientat = LogMel(CATALOGUE[NAME].frontend)
    vggish_32k = LogMel(FrontendConfig(sample_rate=32000, n_mels=64))  # another kind and band count, same rate
    torch.manual_seed(2)
    members = [models.create("efficientat_mn04").eval(),
               models.from_config(models.variant_config("efficientat_mn04", frontend=vggish_32k.config)).eval()]
    clipwise, framewise = Predictor(members, [efficientat, vggish_32k], "cpu")(wave)
    with torch.no_grad():
        outs = [model(frontend(wave)) for model, frontend in zip(members, (efficientat, vggish_32k))]
    frames = min(out["framewise"].shape[1] for out in outs)
    torch.testing.assert_close(clipwise, (outs[0]["clipwise"] + outs[1]["clipwise"]) / 2)
    torch.testing.assert_close(framewise, (outs[0]["framewise"][:, :frames] + outs[1]["framewise"][:, :frames]) / 2)

    torch.manual_seed(1)
    torch.save({"model": models.create("cnn14_16k").state_dict()}, tmp_path / "cnn14_16k.pth")
    import_release(tmp_path / "cnn14_16k.pth", "panns_cnn14_16k", tmp_path / "cnn")
    run = f"pretrained:{NAME}"
    assert_error_line(run_cli("tag", str(clip), "--run", run, "--run", str(tmp_path / "cnn")),
                          "different sample rates cannot be averaged: [16000, 32000] Hz")
    single, double = (run_cli("tag", str(clip), *["--run", run] * n, "--top-k", "2") for n in (1, 2))
    assert double.returncode == 0 and double.stdout == single.stdout, double.stderr  # two equal members: the same


def test_a_dynamic_mobilenet_tags_detects_and_fine_tunes_and_says_why_it_does_not_export(tiny_data, tmp_path):
    torch.manual_seed(5)
    model = models.create("efficientat_dymn04")
    torch.save(model.state_dict(), tmp_path / "dymn04_as.pt")  # their release format
    run = tmp_path / "dymn04"
    assert run_cli("pretrained", "import", "efficientat_dymn04_as", str(tmp_path / "dymn04_as.pt"), "--out",
                   str(run)).returncode == 0
    clip = sorted((tiny_data / "eval" / "audio").glob("*.flac"))[0]
    tagged = run_cli("tag", str(clip), "--run", str(run), "--top-k", "2")
    assert tagged.returncode == 0 and len(re.findall(r" [01]\.\d{3}", tagged.stdout)) == 2, tagged.stderr
    assert run_cli("detect", str(clip), "--run", str(run), "--classes", "dcase2018", "-o",
                   str(tmp_path / "e.tsv")).returncode == 0
    assert_one_line_error(run_cli("export-onnx", "--run", str(run), "-o", str(tmp_path / "d.onnx")),
                          "efficientat_dymn04 does not export to ONNX", "its own mix of kernels")
    tuned = run_cli("train", "--data", str(tiny_data / "train"), "--eval-data", str(tiny_data / "eval"), "--init",
                    str(run / "epoch_001.pt"), "--epochs", "1", "--batch-size", "16", "--lr", "1e-12", "--out",
                    str(tmp_path / "tuned"))
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    state = Checkpoint.load(tmp_path / "tuned" / "epoch_001.pt")
    assert state.model_config["family"] == "efficientat_dymn" and state.model["classifier.5.weight"].shape[0] == 10
    torch.testing.assert_close(state.model["layers.3.depth_conv.weight"], model.state_dict()["layers.3.depth_conv.weight"])


def test_an_ensemble_is_scored_member_by_member_and_as_their_mean(tiny_run, tiny_data, tmp_path):
    from audioscene.evaluate import evaluate_ensemble
    from audioscene.metrics import summarize

    second = tmp_path / "second"  # another run: the tiny run's first epoch with every weight moved
    state = Checkpoint.load(tiny_run / "epoch_001.pt")
    torch.manual_seed(9)
    state.model = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.model.items()}
    second.mkdir()
    state.save(second / "epoch_001.pt")
    found = evaluate_ensemble([tiny_run, second], tiny_data / "eval", checkpoint="last", device="cpu", progress=False)
    members = [found.variants[tiny_run.name], found.variants["second"]]
    mean = (members[0].outputs + members[1].outputs) / 2
    np.testing.assert_allclose(found.variants["ensemble"].outputs, mean, atol=1e-6)
    assert found.variants["ensemble"].summary["mAP"] == pytest.approx(summarize(found.targets, mean)["mAP"], abs=1e-9)
    assert (members[0].epoch, members[1].epoch) == (2, 1)  # each member's last checkpoint
    printed = run_cli("evaluate", "--run", str(tiny_run), "--run", str(second), "--data", str(tiny_data / "eval"),
                      "--checkpoint", "last", "--per-class", str(tmp_path / "per_class.csv"))
    assert printed.returncode == 0, printed.stderr
    assert "| ensemble (mean of the members)" in printed.stdout and f"| {tiny_run.name} (ensemble member, epoch 2)" \
        in printed.stdout
    assert_one_line_error(run_cli("evaluate", "--run", str(tiny_run), "--run", str(second), "--data",
                                  str(tiny_data / "eval")), "give --per-class FILE")
    reported = run_cli("report", "--runs", str(tiny_run), "--eval-data", str(tiny_data / "eval"), "--ensemble",
                       f"both={tiny_run},{second}", "--checkpoint", "last", "--bootstrap", "100", "-o",
                       str(tmp_path / "report"))
    assert reported.returncode == 0, reported.stderr[-2000:]
    row = next(line for line in reported.stdout.splitlines() if line.startswith("| both (mean of the members)"))
    assert f"| {found.variants['ensemble'].summary['mAP']:.3f} [" in row  # the ensemble's mAP, with its interval
    assert_one_line_error(run_cli("report", "--runs", str(tiny_run), "--eval-data", str(tiny_data / "eval"),
                                  "--ensemble", f"both={tiny_run}", "-o", str(tmp_path / "r2")),
                          "expected NAME=RUN,RUN (two runs or more)")
