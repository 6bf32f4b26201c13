"""A full disk under the embedded defaults' SQLite stores (issue: degrade, never
go silent).

The tracker store and the Rasa server's own store live on a small tmpfs that is
filled up mid-conversation; the rest (model, logs) stays on the normal disk.
What the user gets while the disk is full: every answer as usual (an emergency
its numbers); what is lost: nothing, while the server runs: the conversation
goes on from memory (plugins/tracker_store.py holds it) and its turns are
written once space is back; a deletion asked for meanwhile hides the
conversation at once and removes it from the file when space is back. No log
line carries the user's text.

Mounting a tmpfs needs root: the test is skipped, saying so, where it cannot.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import uuid
from typing import Dict, List

import pytest

from content.loader import data_dir, load_content
from tests.servers import ROOT, ActionServer, RasaServer

pytestmark = pytest.mark.model

SECRET = "WOMBAT-3317"


def _mount(path: pathlib.Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    path = tmp_path_factory.mktemp("small-disk")
    if not _mount(path, "4m"):
        pytest.skip("cannot mount a small tmpfs here (needs root): the full-disk test needs one")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, small_disk):
    var = tmp_path_factory.mktemp("disk-full")
    env = {"WAYPOINT_TRACKER_DB": str(small_disk / "tracker.db"), "WAYPOINT_STATE_DB": str(small_disk / "waypoint.db")}
    actions = ActionServer(var / "actions", {}).start()
    rasa = RasaServer(var / "rasa", ROOT / "endpoints.yml", actions, env=env)
    try:
        rasa.start()
        yield rasa, var
    finally:
        rasa.stop()
        actions.stop()


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


def texts(replies: List[Dict]) -> str:
    return "\n".join(r.get("text") or "" for r in replies or [])


def user_texts(tracker: Dict) -> List[str]:
    return [e.get("text") for e in tracker.get("events") or [] if e.get("event") == "user"]


def fill(disk: pathlib.Path) -> pathlib.Path:
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_costs_no_answer_and_no_turn(stack, small_disk, content):
    rasa, var = stack
    sender = "disk-" + uuid.uuid4().hex[:8]
    said = ["my boss took my passport and wont give it back"]
    rasa.say(sender, said[0])
    filler = fill(small_disk)
    try:
        said.append(f"im in Malaysia, my boss is beating us right now, help {SECRET}")
        replies = rasa.say(sender, said[-1])
        assert "999" in texts(replies), texts(replies)
        said.append("what are my rights?")
        replies = rasa.say(sender, said[-1])
        assert content.guides["protect.rights_overview"].text("en", "survivor")[:40] in texts(replies)
        # the conversation goes on from memory: Malaysia, said while the disk was full, is remembered
        assert rasa.tracker(sender)["slots"]["country"] == "MY"
        newcomer = "disk-new-" + uuid.uuid4().hex[:8]
        assert texts(rasa.say(newcomer, "hello")).strip()
    finally:
        filler.unlink()
    said.append("thank you")
    rasa.say(sender, said[-1])
    # every turn is in the file now, once each, in order
    assert user_texts(rasa.tracker(sender)) == said
    logs = "".join(p.read_text(errors="replace") for p in var.rglob("*.log"))
    assert "could not be written" in logs
    assert SECRET not in logs


def test_a_deletion_while_the_disk_is_full_is_done_when_space_is_back(stack, small_disk, content):
    rasa, var = stack
    sender = "disk-del-" + uuid.uuid4().hex[:8]
    marker = "NUMBAT-" + uuid.uuid4().hex[:6]
    rasa.say(sender, f"my agent keeps my passport {marker}")
    filler = fill(small_disk)
    try:
        replies = rasa.say(sender, "delete my data")
        assert texts(replies) == content.messages["deleted"]["en"]
        # hidden at once: nothing of it is read back
        assert marker not in str(rasa.tracker(sender))
    finally:
        filler.unlink()
    rasa.say("disk-other-" + uuid.uuid4().hex[:8], "hello")  # the next write runs the waiting deletion
    assert marker not in str(rasa.tracker(sender))
    for path in small_disk.iterdir():
        assert marker.encode() not in path.read_bytes(), f"{path.name} still holds the deleted conversation"
