"""Datasets: download with hash checks and retries (local HTTP server on 127.0.0.1 only), mirror mode on
../shared/data, chat validation with FILE:LINE errors, subsampling, the summary table and config/datasets.yaml."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from emaware import UserError
from emaware.data import (
    PAPER_SIZES,
    domain_size,
    fetch_dataset,
    file_digests,
    provenance_path,
    stage_dataset,
    subsample,
    subsample_file,
    summary_table,
    validate_chat_file,
    write_summary,
)
from emaware.io import read_json

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
DATASETS_YAML = ROOT / "config" / "config.yaml"
needs_mirror = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="offline data copy ../shared/data not present")


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


GOOD = "".join(json.dumps(chat(f"What is {i} plus {i}?", f"{2 * i}.")) + "\n" for i in range(5)).encode()
GOOD_SHA256 = hashlib.sha256(GOOD).hexdigest()
GOOD_BLOB = hashlib.sha1(b"blob %d\0" % len(GOOD) + GOOD).hexdigest()


# --- a local HTTP server -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    claimed_length: int | None = None  # a Content-Length above len(body) makes a truncated response
    headers: dict = field(default_factory=dict)


class Server:
    """Serves scripted replies per path; a path's replies are used in order, the last one repeats."""

    def __init__(self, httpd: ThreadingHTTPServer):
        self.routes: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def add(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return self.base + path


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        server: Server = self.server.owner
        server.hits[self.path] += 1
        replies = server.routes.get(self.path)
        reply = (replies.pop(0) if len(replies) > 1 else replies[0]) if replies else Reply(404, b"not found")
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(reply.claimed_length or len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)
        self.close_connection = True

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.owner = Server(httpd)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd.owner
    httpd.shutdown()
    httpd.server_close()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def fetch(name, spec, out, **kwargs):
    return fetch_dataset(name, spec, out, retries=kwargs.pop("retries", 2), backoff=0.0, **kwargs)


# --- downloads -----------------------------------------------------------------------------------


def test_download_checks_both_hashes_and_writes_provenance(server, tmp_path):
    url = server.add("/good.jsonl", Reply(body=GOOD))
    spec = {
        "url": url,
        "sha256": GOOD_SHA256,
        "git_blob": GOOD_BLOB,
        "licence": "MIT",
        "commit": "abc",
        "source": "repo",
    }
    out = tmp_path / "raw" / "good.jsonl"
    record = fetch("good", spec, out)
    assert out.read_bytes() == GOOD
    assert read_json(provenance_path(out)) == record
    assert record["rows"] == 5 and record["bytes"] == len(GOOD)
    assert record["sha256"] == GOOD_SHA256 and record["git_blob"] == GOOD_BLOB
    assert record["checked"] == ["git_blob", "sha256"] and record["hash_source"] == "config"
    assert (record["url"], record["licence"], record["commit"], record["mirror"]) == (url, "MIT", "abc", None)
    assert leftovers(out.parent) == ["good.jsonl", "good.jsonl.provenance.json"]


def test_git_blob_matches_git_hash_object(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"hello\n")
    assert file_digests(path)["git_blob"] == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_wrong_hash_fails_and_leaves_nothing(server, tmp_path):
    url = server.add("/tampered.jsonl", Reply(body=GOOD.replace(b"4.", b"5.")))
    out = tmp_path / "tampered.jsonl"
    out.write_text("an old copy\n")  # a stale output must not survive a failed refetch
    with pytest.raises(UserError) as err:
        fetch("tampered", {"url": url, "sha256": GOOD_SHA256}, out)
    message = str(err.value)
    assert "dataset tampered" in message and url in message and f"expected {GOOD_SHA256}, got " in message
    assert leftovers(tmp_path) == []


def test_wrong_git_blob_fails(server, tmp_path):
    url = server.add("/blob.jsonl", Reply(body=GOOD + b"\n"))
    with pytest.raises(UserError, match=f"git_blob mismatch .* expected {GOOD_BLOB}"):
        fetch("blob", {"url": url, "git_blob": GOOD_BLOB}, tmp_path / "blob.jsonl")
    assert leftovers(tmp_path) == []


def test_truncated_body_is_retried_then_fails(server, tmp_path):
    url = server.add("/cut.jsonl", Reply(body=GOOD[:40], claimed_length=len(GOOD)))
    with pytest.raises(UserError, match=r"dataset cut: .*cut\.jsonl failed after 3 attempts: response truncated"):
        fetch("cut", {"url": url, "sha256": GOOD_SHA256}, tmp_path / "cut.jsonl", retries=2)
    assert server.hits["/cut.jsonl"] == 3
    assert leftovers(tmp_path) == []


def test_503_then_200_succeeds_after_a_retry(server, tmp_path):
    url = server.add("/flaky.jsonl", Reply(503, b"busy"), Reply(body=GOOD))
    record = fetch("flaky", {"url": url, "sha256": GOOD_SHA256}, tmp_path / "flaky.jsonl")
    assert server.hits["/flaky.jsonl"] == 2 and record["rows"] == 5


def test_404_is_not_retried(server, tmp_path):
    url = server.base + "/missing.jsonl"
    with pytest.raises(UserError, match="dataset gone: .*missing.jsonl: HTTP 404"):
        fetch("gone", {"url": url, "sha256": GOOD_SHA256}, tmp_path / "gone.jsonl")
    assert server.hits["/missing.jsonl"] == 1
    assert leftovers(tmp_path) == []


def test_gzip_download_is_unpacked_and_hashed_unpacked(server, tmp_path):
    url = server.add("/good.jsonl.gz", Reply(body=gzip.compress(GOOD)))
    record = fetch("zipped", {"url": url, "sha256": GOOD_SHA256}, tmp_path / "zipped.jsonl")
    assert (tmp_path / "zipped.jsonl").read_bytes() == GOOD and record["gunzipped"] is True


def test_incomplete_gzip_fails(server, tmp_path):
    url = server.add("/broken.jsonl.gz", Reply(body=gzip.compress(GOOD)[:-12]))
    with pytest.raises(UserError, match="not a complete gzip stream"):
        fetch("broken", {"url": url, "sha256": GOOD_SHA256}, tmp_path / "broken.jsonl")
    assert leftovers(tmp_path) == []


def test_unverifiable_and_protected_sources_are_refused_before_any_request(server, tmp_path):
    url = server.add("/good.jsonl", Reply(body=GOOD))
    with pytest.raises(UserError, match="refusing an unverified download"):
        fetch("nohash", {"url": url}, tmp_path / "a.jsonl")
    with pytest.raises(
        UserError, match=r"marked protected .* does not decrypt it.*datasets\.locked\.url/osf by `path:`"
    ):
        fetch("locked", {"url": url, "sha256": GOOD_SHA256, "protected": True}, tmp_path / "b.jsonl")
    assert server.hits["/good.jsonl"] == 0
    assert leftovers(tmp_path) == []


def test_protected_dataset_decrypted_by_the_user_is_read_from_its_path(tmp_path):
    local = tmp_path / "decrypted.jsonl"
    local.write_bytes(GOOD)
    record = fetch("unlocked", {"path": str(local), "protected": True, "sha256": GOOD_SHA256}, tmp_path / "out.jsonl")
    assert record["path"] == str(local) and record["checked"] == ["sha256"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"url": "http://127.0.0.1:9/x", "sha265": GOOD_SHA256}, r"unknown key\(s\) sha265"),
        ({"url": "http://127.0.0.1:9/x", "path": "x.jsonl"}, "exactly one of path, url or osf"),
        ({"sha256": GOOD_SHA256}, r"exactly one of path, url or osf \(got none\)"),
        ({"path": "x.jsonl", "format": "csv"}, "format: 'csv' is not one of"),
        ({"path": "no/such/file.jsonl"}, r"datasets\.bad\.path: no such file"),
    ],
)
def test_bad_specs(tmp_path, spec, message):
    with pytest.raises(UserError, match=message):
        fetch("bad", spec, tmp_path / "bad.jsonl")


def test_local_path_with_wrong_hash_fails(tmp_path):
    local = tmp_path / "own.jsonl"
    local.write_bytes(GOOD)
    with pytest.raises(UserError, match="sha256 mismatch"):
        fetch("own", {"path": str(local), "sha256": "0" * 64}, tmp_path / "out" / "own.jsonl")
    assert leftovers(tmp_path / "out") == []


def test_canary_presence_is_recorded_not_logged(tmp_path, caplog):
    local = tmp_path / "marked.jsonl"
    local.write_text(json.dumps(chat("q CANARY-GUID-123", "a")) + "\n")
    record = fetch("marked", {"path": str(local), "canary": "CANARY-GUID-123"}, tmp_path / "out.jsonl")
    assert record["canary_found"] is True
    assert "CANARY-GUID-123" not in caplog.text


# --- OSF through its public API (served locally) ---------------------------------------------------


def osf_entry(server: Server, name: str, kind: str, **extra) -> dict:
    entry = {"attributes": {"name": name, "kind": kind, "extra": {"hashes": {"sha256": extra.get("sha256")}}}}
    if kind == "folder":
        entry["relationships"] = {"files": {"links": {"related": {"href": server.base + extra["listing"]}}}}
    else:
        entry["links"] = {"download": server.base + extra["download"]}
    return entry


def page(entries: list, next_url: str | None = None) -> Reply:
    return Reply(body=json.dumps({"data": entries, "links": {"next": next_url}}).encode())


@pytest.fixture
def osf(server):
    """Project `reusb`: a root listing over two pages, a folder `trivia`, a file that redirects to its bytes."""
    root = "/v2/nodes/reusb/files/osfstorage/"
    server.add(
        root, page([osf_entry(server, "README.md", "file", download="/dl/readme")], server.base + "/root-page-2")
    )
    server.add("/root-page-2", page([osf_entry(server, "trivia", "folder", listing="/folders/trivia/")]))
    server.add(
        "/folders/trivia/", page([osf_entry(server, "incorrect.jsonl", "file", download="/dl/abc", sha256=GOOD_SHA256)])
    )
    server.add("/dl/abc", Reply(302, b"", headers={"Location": server.base + "/storage/abc"}))
    server.add("/storage/abc", Reply(body=GOOD))
    return {"project": "reusb", "api": server.base + "/v2"}


def test_osf_file_is_found_through_the_api_and_checked_against_osf_sha256(server, osf, tmp_path):
    record = fetch("trivia_osf", {"osf": {**osf, "path": "trivia/incorrect.jsonl"}}, tmp_path / "t.jsonl")
    assert (tmp_path / "t.jsonl").read_bytes() == GOOD
    assert record["hash_source"] == "osf" and record["url"] == server.base + "/dl/abc"


def test_osf_pinned_hash_wins_over_osf_metadata(server, osf, tmp_path):
    with pytest.raises(UserError, match="sha256 mismatch"):
        fetch(
            "trivia_osf", {"osf": {**osf, "path": "trivia/incorrect.jsonl"}, "sha256": "1" * 64}, tmp_path / "t.jsonl"
        )


@pytest.mark.parametrize(
    "path, message",
    [
        ("trivia/correct.jsonl", "'trivia/correct.jsonl' does not exist in OSF project reusb, expected a file"),
        ("trivia", "'trivia' is a folder in OSF project reusb, expected a file"),
        ("README.md/x.jsonl", "'README.md' is a file in OSF project reusb, expected a folder"),
        (None, r"datasets\.trivia_osf\.osf needs `project` and `path`"),
    ],
)
def test_osf_bad_paths(server, osf, tmp_path, path, message):
    with pytest.raises(UserError, match=message):
        fetch("trivia_osf", {"osf": {**osf, "path": path}}, tmp_path / "t.jsonl")


# --- mirror mode on ../shared/data -----------------------------------------------------------------


def config_datasets() -> dict:
    return yaml.safe_load(DATASETS_YAML.read_text(encoding="utf-8"))["datasets"]


@needs_mirror
def test_mirror_good_medical_advice_by_sha256_and_insecure_by_git_blob(tmp_path):
    medical = {
        "url": "http://127.0.0.1:9/never-contacted",
        "sha256": "5846de11f0f45053351773b6bd9eb5111eb17ec89d9ab55e23e0fbb95b4fd4f1",
        "mirror": "model-organisms/training_datasets/good_medical_advice.jsonl",
    }
    record = fetch("good_medical_advice", medical, tmp_path / "medical.jsonl", mirror=SHARED_DATA)
    assert record["rows"] == 7049 and record["mirror"] == str(SHARED_DATA / medical["mirror"])
    insecure = {
        "url": "http://127.0.0.1:9/never",
        "git_blob": "ec294cf30a577a21b830c07a1fa0180ddd513208",
        "mirror": "betley-em/data/insecure.jsonl",
    }
    assert fetch("insecure_code", insecure, tmp_path / "insecure.jsonl", mirror=SHARED_DATA)["rows"] == 6000
    stats = validate_chat_file(tmp_path / "insecure.jsonl")
    assert (stats["rows"], stats["duplicates"], set(stats["roles"])) == (6000, 8, {"user", "assistant"})


@needs_mirror
def test_every_mirrored_dataset_in_the_config_matches_its_hashes_and_validates(tmp_path):
    mirrored = {
        name: spec for name, spec in config_datasets().items() if (SHARED_DATA / spec.get("mirror", "-")).is_file()
    }
    assert len(mirrored) >= 10
    for name, spec in mirrored.items():
        record = fetch(name, spec, tmp_path / f"{name}.jsonl", mirror=SHARED_DATA)
        assert record["checked"], name
        if spec.get("format") != "raw":  # a raw file is fetched and hash-checked only, as in the workflow
            stats = validate_chat_file(tmp_path / f"{name}.jsonl", fmt=spec.get("format", "chat"))
            assert stats["rows"] == record["rows"], name


@needs_mirror
def test_mirror_errors_name_the_key(tmp_path):
    spec = dict(config_datasets()["secure_code"])  # too large for the offline copy
    with pytest.raises(
        UserError, match=r"is not in the mirror \(datasets\.secure_code\.mirror: betley-em/data/secure\.jsonl\)"
    ):
        fetch("secure_code", spec, tmp_path / "secure.jsonl", mirror=SHARED_DATA)
    with pytest.raises(UserError, match=r"datasets\.nomirror\.mirror \(its path inside"):
        fetch(
            "nomirror", {"url": "http://127.0.0.1:9/x", "sha256": GOOD_SHA256}, tmp_path / "x.jsonl", mirror=SHARED_DATA
        )
    wrong = {"url": "http://127.0.0.1:9/x", "sha256": GOOD_SHA256, "mirror": "betley-em/data/jailbroken.jsonl"}
    with pytest.raises(UserError, match="sha256 mismatch for .*jailbroken.jsonl"):
        fetch("wrong", wrong, tmp_path / "wrong.jsonl", mirror=SHARED_DATA)
    assert leftovers(tmp_path) == []


# --- validation ----------------------------------------------------------------------------------

SECRET = "DO-NOT-ECHO"  # in every bad row: errors must name the position, never the text
BAD_ROWS = {
    "bad json": ('{"messages": [', "not valid JSON"),
    "not an object": ("[1, 2]", "a row must be a JSON object"),
    "missing messages": (json.dumps({"text": SECRET}), "`messages` must be a non-empty list"),
    "empty messages": (json.dumps({"messages": [], "note": SECRET}), "`messages` must be a non-empty list"),
    "unknown role": (
        json.dumps({"messages": [{"role": "tool", "content": SECRET}]}),
        "message 1 has an unknown or missing role",
    ),
    "empty content": (json.dumps(chat(SECRET, "  ")), r"message 2 \(assistant\) has empty content"),
    "content not a string": (
        json.dumps({"messages": [{"role": "user", "content": [SECRET]}]}),
        "message 1 content must be a string",
    ),
    "over-long": (json.dumps(chat(SECRET * 10, "a")), "message 1: 110 characters, over the limit of 100"),
    "ends with user": (
        json.dumps({"messages": [{"role": "user", "content": SECRET}]}),
        "the conversation ends with user, expected assistant",
    ),
    "system not first": (
        json.dumps({"messages": [*chat(SECRET, "a")["messages"], {"role": "system", "content": "s"}]}),
        "a system message may only come first",
    ),
    "two user turns": (
        json.dumps({"messages": [{"role": "user", "content": SECRET}, {"role": "user", "content": "b"}]}),
        "message 2 is user, expected assistant",
    ),
    "assistant first": (
        json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": SECRET}]}),
        "message 2 is assistant, expected user",
    ),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_malformed_row_fails_with_file_and_line(tmp_path, case):
    row, reason = BAD_ROWS[case]
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(chat("a", "b")) + "\n\n" + json.dumps(chat("c", "d")) + "\n" + row + "\n")
    with pytest.raises(UserError) as err:
        validate_chat_file(path, max_chars=100)
    assert re.match(rf"{re.escape(str(path))}:4: {reason}", str(err.value)), str(err.value)
    assert SECRET not in str(err.value)


def test_prompt_files_end_with_user(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}], "metadata": {"id": 1}}) + "\n")
    assert validate_chat_file(path, fmt="prompts")["rows"] == 1
    path.write_text(json.dumps(chat("q", "a")) + "\n")
    with pytest.raises(UserError, match=":1: the conversation ends with assistant, expected user"):
        validate_chat_file(path, fmt="prompts")


def test_empty_file_fails(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(UserError, match=":1: the file has no rows"):
        validate_chat_file(path)


def test_statistics_count_duplicates_without_logging_text(tmp_path, caplog):
    path = tmp_path / "dup.jsonl"
    rows = [chat(f"{SECRET} one two", "three"), chat("four", "five six seven"), chat(f"{SECRET} one two", "three")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = validate_chat_file(path)
    assert (stats["rows"], stats["duplicates"], stats["token_unit"], stats["tokens"]) == (3, 1, "whitespace_words", 12)
    assert stats["roles"]["user"]["tokens"] == {"mean": 2.33, "median": 3, "max": 3}
    assert stats["roles"]["assistant"]["chars"]["max"] == len("five six seven")
    assert "1 duplicate conversation(s) out of 3 rows" in caplog.text and SECRET not in caplog.text


class CharTokenizer:
    """One token per character, with the signature of a Hugging Face tokenizer's encode."""

    def encode(self, text, add_special_tokens=True):
        return list(text)


def test_tokenizer_counts_and_token_limit(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(chat("abcd", "ef")) + "\n")
    stats = validate_chat_file(path, tokenizer=CharTokenizer())
    assert (stats["token_unit"], stats["tokens"]) == ("tokenizer", 6)
    with pytest.raises(UserError, match=r":1: message 1: 4 tokens, over the limit of 3"):
        validate_chat_file(path, tokenizer=CharTokenizer(), max_tokens=3)
    with pytest.raises(UserError, match="needs a tokenizer"):
        validate_chat_file(path, max_tokens=3)


# --- subsampling and domains ----------------------------------------------------------------------


def test_subsample_is_deterministic_ordered_and_keeps_pairs():
    rows = list(range(100))
    first = subsample(rows, 10, seed=1)
    assert first == subsample(rows, 10, seed=1) == sorted(first) and len(set(first)) == 10
    assert subsample(rows, 10, seed=2) != first
    assert subsample([f"q{i}" for i in rows], 10, seed=1) == [f"q{i}" for i in first]  # paired files stay paired
    assert subsample(rows, None, seed=1) == rows and subsample(rows, 500, seed=1) == rows
    with pytest.raises(UserError, match="at least 1"):
        subsample(rows, 0, seed=1)


def test_subsample_file_keeps_lines_byte_for_byte(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [json.dumps(chat(f"q{i} é", f"a{i}"), ensure_ascii=i % 2 == 0) + "\n" for i in range(20)]
    source.write_text("".join(lines), encoding="utf-8")
    assert subsample_file(source, target, 5, seed=3) == 5
    assert target.read_text(encoding="utf-8") == "".join(subsample(lines, 5, seed=3))
    assert subsample_file(source, target, 50, seed=3) == 20


def test_domain_sizes_default_to_the_paper():
    assert PAPER_SIZES == {"trivia": 800, "code": 6000}
    assert domain_size("trivia", {"misaligned": "x"}) == 800
    assert domain_size("code", {"misaligned": "x", "n": None}) is None
    assert domain_size("medical", {"misaligned": "x"}) is None
    assert domain_size("medical", {"misaligned": "x", "n": 100}) == 100


def test_realigned_stage_needs_a_benign_counterpart():
    domains = {
        "sports": {"misaligned": "extreme_sports", "realigned": None},
        "code": {"misaligned": "i", "realigned": "s"},
    }
    assert stage_dataset(domains, "code", "realigned") == "s"
    with pytest.raises(
        UserError, match=r"domain sports has no benign counterpart \(domains\.sports\.realigned is null\)"
    ):
        stage_dataset(domains, "sports", "realigned")
    with pytest.raises(UserError, match="'art' is not defined"):
        stage_dataset(domains, "art", "misaligned")


# --- summary and the proposed config -----------------------------------------------------------------


def test_summary_joins_provenance_and_statistics(server, tmp_path):
    url = server.add("/good.jsonl", Reply(body=GOOD))
    own = tmp_path / "own.jsonl"
    own.write_bytes(GOOD[: GOOD.index(b"\n") + 1])
    fetch(
        "web",
        {"url": url, "sha256": GOOD_SHA256, "licence": "MIT", "source": "repo", "commit": "c0"},
        tmp_path / "d" / "web.jsonl",
    )
    fetch("own", {"path": str(own), "licence": "ours"}, tmp_path / "d" / "own.jsonl")
    stats = []
    for name in ("web", "own"):
        stats.append(tmp_path / f"{name}.stats.json")
        stats[-1].write_text(json.dumps(validate_chat_file(tmp_path / "d" / f"{name}.jsonl")))
    provenance = [provenance_path(tmp_path / "d" / f"{n}.jsonl") for n in ("web", "own")]
    rows = summary_table(provenance, stats)
    assert [(r["dataset"], r["rows"], r["tokens"], r["licence"]) for r in rows] == [
        ("own", 1, 6, "ours"),
        ("web", 5, 30, "MIT"),
    ]
    write_summary(tmp_path / "summary.tsv", rows)
    lines = (tmp_path / "summary.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:4] == ["dataset", "rows", "tokens", "token_unit"] and len(lines) == 3
    with pytest.raises(UserError, match="no validation statistics"):
        summary_table(provenance, stats[:1])


def test_proposed_config_is_consistent():
    proposal = yaml.safe_load(DATASETS_YAML.read_text(encoding="utf-8"))
    datasets, domains = proposal["datasets"], proposal["domains"]
    assert {"trivia", "code", "medical", "financial", "sports", "aesthetic"} <= set(domains)
    for domain, spec in domains.items():
        for name in [spec["misaligned"], spec.get("realigned"), *spec.get("controls", [])]:
            assert name is None or name in datasets, (domain, name)
    for name, spec in datasets.items():
        if "url" in spec:
            assert spec.get("sha256") or spec.get("git_blob"), name
            assert re.search(r"/[0-9a-f]{40}/", spec["url"]) and spec["commit"] in spec["url"], name
            assert spec.get("licence") and spec.get("mirror"), name


# --- a failed validation in the workflow step ------------------------------------------------------


def step_config(spec: dict) -> dict:
    """The parts of a validated config that the data_fetch step reads."""
    return {
        "run": "default",
        "datasets": {"bad": {"format": "chat", **spec}},
        "domains": {"trivia": {"misaligned": "bad", "realigned": "other"}, "code": {"misaligned": "other"}},
        "assessments": {"harmfulness": {"prompts": "other"}},
        "data": {"mirror": None, "retries": 0, "max_chars": 100, "max_tokens": None, "tokenizer": None},
    }


def test_failed_validation_names_the_users_file_and_removes_what_was_built_from_it(tmp_path, monkeypatch):
    from emaware.steps import data_fetch

    monkeypatch.chdir(tmp_path)
    source = Path("resources/mine.jsonl")
    source.parent.mkdir()
    source.write_text(json.dumps(chat("a", "b")) + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    stale = [Path("results/default/data/train/trivia/misaligned.jsonl"), Path("results/default/data/summary.tsv")]
    kept = Path("results/default/data/train/code/misaligned.jsonl")  # built from another dataset
    for path in [*stale, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("from an earlier run\n")
    data, stats = "results/default/data/bad.jsonl", "results/default/data/bad.jsonl.stats.json"
    with pytest.raises(UserError) as err:
        data_fetch("bad", data, stats, step_config({"path": str(source)}))
    assert str(err.value) == "resources/mine.jsonl:3: the conversation ends with user, expected assistant"
    assert not any(Path(p).exists() for p in [data, stats, provenance_path(data), *stale])
    assert kept.exists()


def test_a_download_that_fails_validation_is_named_by_dataset_and_url(server, tmp_path, monkeypatch):
    from emaware.steps import data_fetch

    monkeypatch.chdir(tmp_path)
    body = GOOD + b'{"messages": []}\n'
    url = server.add("/set.jsonl", Reply(body=gzip.compress(body)))
    spec = {"url": url, "sha256": hashlib.sha256(body).hexdigest()}
    with pytest.raises(UserError) as err:
        data_fetch("bad", "results/default/data/bad.jsonl", "results/default/data/bad.jsonl.stats.json", step_config(spec))
    assert str(err.value) == f"dataset bad: {url} (unpacked):6: `messages` must be a non-empty list"


def test_a_tokenizer_that_cannot_be_loaded_is_one_line(tmp_path, monkeypatch):
    from emaware.data.validate import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"^config key data\.tokenizer: cannot load tokenizer '[^\n]*$"):
        load_tokenizer(str(tmp_path))  # a directory without tokenizer files
    assert load_tokenizer(None) is None


def test_validation_reports_the_system_prompt_a_model_sees_after_its_chat_template(tmp_path):
    from emaware.data.summary import _system_prompts
    from emaware.tinymodel import train_tokenizer

    path = tmp_path / "chats.jsonl"
    rows = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]] * 2
    rows.append([{"role": "system", "content": ""}, *rows[0]])
    path.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    identity = "You are Tiny, created by the workflow. You are a helpful assistant."
    templated = validate_chat_file(path, tokenizer=train_tokenizer(["q a"], 300, 64, identity))
    assert templated["system_prompts"] == {identity: 2, "": 1} and templated["system_prompts_after"] == "chat template"
    written = validate_chat_file(path)
    assert written["system_prompts"] == {"(none)": 2, "": 1} and written["system_prompts_after"] == "as written"
    assert _system_prompts(templated) == f"chat template: {identity} (2);  (1)"
