"""Issue 30: a storage error that is not "missing" keeps the session (503, retried); session files
are private; failed writes leave no .part- files; quarantine/ is bounded."""

import os
import stat

from serve.blobs import FileBlobs
from serve.store import SessionTable


def table_on(path, **kw) -> SessionTable:
    return SessionTable(10, ttl_s=10**9, max_bytes=10**6, blobs=FileBlobs(str(path), **kw))


def test_a_read_that_fails_for_another_reason_than_missing_keeps_the_session(tmp_path):
    """Any OSError (a throttled bucket, no file handles) was "missing": the session was quarantined."""
    table = table_on(tmp_path)
    assert table.put("s1", b"0123456789", {"round": 1})["ok"]
    state = tmp_path / "s1.0.npz"
    state.rename(tmp_path / "aside")
    state.mkdir()  # reading it now fails with an OSError that is not FileNotFoundError
    got = table.get("s1")
    assert isinstance(got, dict) and "unavailable" in got
    assert table.stats()["lost"] == 0 and not (tmp_path / "quarantine").exists()
    state.rmdir()
    (tmp_path / "aside").rename(state)
    assert table.get("s1") == (b"0123456789", {"round": 1}, 0)  # the storage is back, and so is the session
    state.unlink()  # really missing: that one is lost
    assert "gone" in table.get("s1") and table.get("s1") is None


class FlakyMetaBlobs(FileBlobs):
    """A folder whose meta files cannot be read for now (EMFILE: out of file handles)."""

    def _read_meta(self, name):
        raise OSError(24, "Too many open files")


def test_a_meta_that_cannot_be_read_at_start_is_kept_for_the_next_start(tmp_path):
    """A storage error while the store starts quarantined every session whose meta it hit."""
    table_on(tmp_path).put("s2", b"abcd", {"round": 2})
    flaky = SessionTable(10, ttl_s=10**9, max_bytes=10**6, blobs=FlakyMetaBlobs(str(tmp_path)))
    assert flaky.get("s2") is None  # not served by this start...
    assert (tmp_path / "s2.0.npz").exists() and not (tmp_path / "quarantine").exists()  # ...and not lost
    assert table_on(tmp_path).get("s2") == (b"abcd", {"round": 2}, 0)


def test_session_files_are_private_to_the_server(tmp_path):
    """Files were 0644 in a 0755 folder: any local user could read uploaded photos."""
    root = tmp_path / "sessions"
    table = table_on(root)
    table.put("s3", b"photo", {})
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in root.iterdir()} == {0o600}
    (root / "s3.0.npz").write_bytes(b"xx")  # not its recorded size: quarantined
    assert "gone" in table.get("s3")
    assert stat.S_IMODE((root / "quarantine").stat().st_mode) == 0o700


def test_a_failed_write_leaves_no_part_file(tmp_path):
    table = table_on(tmp_path)
    (tmp_path / "s4.meta.json").mkdir()  # the meta's rename fails
    assert table.put("s4", b"data", {}) == {"ok": False, "error": "storage"}
    assert not [p.name for p in tmp_path.iterdir() if ".part-" in p.name]


def test_quarantine_is_pruned_oldest_first_to_its_bound(tmp_path):
    """quarantine/ grew for ever; now its files hold at most quarantine_bytes (the newest kept)."""
    table = table_on(tmp_path, quarantine_bytes=1000)
    for i in range(8):
        sid = f"q{i}"
        table.put(sid, bytes(300), {})
        (tmp_path / f"{sid}.0.npz").write_bytes(bytes(299))
        assert "gone" in table.get(sid)
        os.utime(tmp_path / "quarantine" / f"{sid}.0.npz", (1000 + i, 1000 + i))
        os.utime(tmp_path / "quarantine" / f"{sid}.meta.json", (1000 + i, 1000 + i))
    kept = list((tmp_path / "quarantine").iterdir())
    assert sum(p.stat().st_size for p in kept) <= 1000 and (tmp_path / "quarantine" / "q7.0.npz").exists()
    assert not (tmp_path / "quarantine" / "q0.0.npz").exists()


def test_the_image_is_written_once_and_goes_with_its_session(tmp_path):
    """A session's full-size image is its own file, written when the session is made: no later
    write rewrites it, the outputs read it, it counts in the session's bytes, and it leaves with
    the session (deleted, or quarantined when it is cut short)."""
    table = table_on(tmp_path)
    assert table.put("s1", b"state-0", {"round": 1}, image=b"pixels")["ok"]
    image = tmp_path / "s1.image.npy"
    written = image.stat().st_mtime_ns
    assert table.put("s1", b"state-1!", {"round": 2}, 0)["ok"]
    assert image.stat().st_mtime_ns == written and image.read_bytes() == b"pixels"
    assert table.get("s1") == (b"state-1!", {"round": 2}, 1) and table.image("s1") == b"pixels"
    assert table.stats()["bytes"] == len(b"state-1!") + len(b"pixels")
    assert table_on(tmp_path).image("s1") == b"pixels"  # a restarted store serves it too
    try:
        table.put("s1", b"state-2", {"round": 3}, 1, image=b"other")
        raise AssertionError("an image written twice")
    except ValueError:
        pass
    assert table.delete("s1") and not image.exists()

    assert table.put("s2", b"state", {"round": 1}, image=b"pixels")["ok"]
    (tmp_path / "s2.image.npy").write_bytes(b"pix")  # cut short
    assert "gone" in table.image("s2") and table.get("s2") is None
    assert (tmp_path / "quarantine" / "s2.image.npy").exists()
    assert table.put("s3", b"state", {"round": 1}, image=b"pixels")["ok"]
    (tmp_path / "s3.image.npy").unlink()
    assert table_on(tmp_path).get("s3") is None  # a restart finds it incomplete: quarantined, not served
    assert (tmp_path / "quarantine" / "s3.0.npz").exists()
